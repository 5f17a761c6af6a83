"""file_search and code_interpreter in runs, through the official SDK: the production stack (workers calling
the `orchestrator sandbox` service) and `orchestrator dev` (the same jail in-process), both clients (the
`target` and `upstream` fixtures: tests/e2e/conftest.py).

The local model's rules 4 and 5 (ARCHITECTURE.md) decide the calls: it searches once when the run has a
store, and runs the fenced python block of the latest user message."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import sqlalchemy as sa
from openai import AssistantEventHandler, AsyncAssistantEventHandler

from tests.support.clients import make_async_client, make_client
from tests.support.polling import wait_for_run_to_settle
from tests.support.sandbox import ROOT, needs_bwrap
from tests.support.takeover import only_a_slow_worker

pytestmark = [pytest.mark.e2e, needs_bwrap]

INCLUDE = ["step_details.tool_calls[*].file_search.results[*].content"]
KB = {
    "refunds.md": b"Refund policy: damaged goods can be returned within 30 days for a full refund.",
    "shipping.txt": b"Shipping: we ship worldwide, express delivery takes two days.",
    "garden.html": b"<html><body><p>Water the tomatoes early and prune the basil weekly.</p></body></html>",
}


@pytest.fixture(params=["openai", "azure"])
def client(request, target):
    sdk = make_client(request.param, target.base, target.key, max_retries=0, timeout=60)
    yield sdk
    sdk.close()


def knowledge_base(client):
    ids = {name: client.files.create(file=(name, data), purpose="assistants").id for name, data in KB.items()}
    store = client.vector_stores.create(name="kb")
    batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=list(ids.values()))
    assert batch.file_counts.completed == len(KB), batch
    return store, ids


def ask(client, assistant, text: str, thread_id: str | None = None, **message):
    if thread_id is None:
        thread_id = client.beta.threads.create().id
    client.beta.threads.messages.create(thread_id, role="user", content=text, **message)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant.id)
    assert run.status == "completed", run
    return run


def reply(client, run):
    messages = client.beta.threads.messages.list(run.thread_id, run_id=run.id)
    (message,) = messages.data
    return message


def tool_step(client, run, **options):
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc", **options)
    calls = [step for step in steps if step.type == "tool_calls"]
    assert len(calls) == 1, steps
    (call,) = calls[0].step_details.tool_calls
    return calls[0], call


# --- file_search ---------------------------------------------------------------------------------------


def test_a_run_searches_the_assistants_store_and_cites_the_file_that_answers(client):
    store, ids = knowledge_base(client)
    assistant = client.beta.assistants.create(
        model="local",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    run = ask(client, assistant, "How many days do I have to return damaged goods for a refund?")
    step, call = tool_step(client, run)
    assert call.type == "file_search" and step.status == "completed"
    top = call.file_search.results[0]
    assert (top.file_id, top.file_name) == (ids["refunds.md"], "refunds.md")
    assert top.content is None  # only with include[]
    assert call.file_search.ranking_options.ranker == "default_2024_08_21"

    _step, included = tool_step(client, run, include=INCLUDE)
    assert "30 days" in included.file_search.results[0].content[0].text
    retrieved = client.beta.threads.runs.steps.retrieve(
        step.id, thread_id=run.thread_id, run_id=run.id, include=INCLUDE
    )
    assert retrieved.step_details.tool_calls[0].file_search.results[0].content

    text = reply(client, run).content[0].text
    assert "30 days" in text.value
    (citation,) = text.annotations
    assert citation.type == "file_citation" and citation.file_citation.file_id == ids["refunds.md"]
    assert text.value[citation.start_index : citation.end_index] == citation.text
    assert run.usage.total_tokens > 0


def test_attachments_fill_the_threads_store_and_a_stream_shows_the_search(client, target):
    data = b"The lighthouse keeper's cat is called Biscuit and sleeps on the lamp room stairs."
    uploaded = client.files.create(file=("keeper.txt", data), purpose="assistants")
    assistant = client.beta.assistants.create(model="local", tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": "What is the cat called?",
                "attachments": [{"file_id": uploaded.id, "tools": [{"type": "file_search"}]}],
            }
        ]
    )
    store_ids = client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        events = [event.event for event in stream]
        final = stream.get_final_messages()
        run = stream.get_final_run()
    assert run.status == "completed"
    assert events.index("thread.run.step.created") < events.index("thread.message.created")
    (message,) = final
    text = message.content[0].text
    assert "Biscuit" in text.value
    assert [a.file_citation.file_id for a in text.annotations] == [uploaded.id]


def test_a_streamed_thread_and_run_shows_the_store_its_attachments_made_in_thread_created(client, target):
    uploaded = client.files.create(file=("keeper.txt", b"The cat is called Biscuit."), purpose="assistants")
    assistant = client.beta.assistants.create(model="local", tools=[{"type": "file_search"}])
    message = {
        "role": "user",
        "content": "What is the cat called?",
        "attachments": [{"file_id": uploaded.id, "tools": [{"type": "file_search"}]}],
    }
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread={"messages": [message]}
    ) as stream:
        created = [event.data for event in stream if event.event == "thread.created"]
    (thread,) = created
    store_ids = thread.tool_resources.file_search.vector_store_ids
    assert len(store_ids) == 1
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == store_ids


def test_a_run_on_an_expired_store_fails_and_says_why(client, target):
    store = client.vector_stores.create(name="old", expires_after={"anchor": "last_active_at", "days": 1})
    engine = sa.create_engine(target.database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE vector_stores SET expires_at = 1 WHERE id = :id"), {"id": store.id}
        )
    engine.dispose()
    assistant = client.beta.assistants.create(
        model="local",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "anything there?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "failed"
    assert "expired" in run.last_error.message and store.id in run.last_error.message


# --- code_interpreter ----------------------------------------------------------------------------------


def code(source: str) -> str:
    return f"Please run this:\n```python\n{source}\n```"


def coder(client, **options):
    return client.beta.assistants.create(model="local", tools=[{"type": "code_interpreter"}], **options)


def test_code_runs_and_its_state_lasts_across_runs_of_a_thread(client):
    assistant = coder(client)
    first = ask(client, assistant, code("x = 6 * 7\nprint(x)"))
    step, call = tool_step(client, first)
    assert call.type == "code_interpreter" and call.code_interpreter.input == "x = 6 * 7\nprint(x)\n"
    assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "42")]
    assert "42" in reply(client, first).content[0].text.value
    second = ask(client, assistant, code("print(x + 1)"), thread_id=first.thread_id)
    assert "43" in reply(client, second).content[0].text.value
    other_thread = ask(client, assistant, code("print('x' in globals())"))
    assert "False" in reply(client, other_thread).content[0].text.value


@pytest.mark.parametrize("client", ["openai"], indirect=True)  # the engine's, not the client's
def test_a_forced_code_interpreter_runs_the_code_and_never_searches_the_store(client):
    note = client.files.create(file=("note.md", b"Nothing to see here."), purpose="assistants")
    store = client.vector_stores.create(name="forced")
    client.vector_stores.file_batches.create_and_poll(store.id, file_ids=[note.id])
    assistant = client.beta.assistants.create(
        model="local",
        tools=[{"type": "file_search"}, {"type": "code_interpreter"}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    thread = client.beta.threads.create(messages=[{"role": "user", "content": code("print(6 * 7)")}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"}
    )
    assert run.status == "completed", run.last_error
    _step, call = tool_step(client, run)  # the one tool step
    assert call.type == "code_interpreter"
    assert reply(client, run).content[0].text.value == "The code ran. Output:\n42"


@pytest.mark.parametrize("client", ["openai"], indirect=True)  # the engine's, not the client's
def test_files_named_dot_and_dot_dot_are_two_files_in_mnt_data(client):
    ids = [
        client.files.create(file=(name, data), purpose="assistants").id
        for name, data in ((".", b"1"), ("..", b"2"))
    ]
    assistant = coder(client, tool_resources={"code_interpreter": {"file_ids": ids}})
    source = "import os\nprint(sorted((n, open(n).read()) for n in os.listdir('/mnt/data')))"
    text = reply(client, ask(client, assistant, code(source))).content[0].text.value
    assert str(sorted([(ids[0], "1"), (ids[1], "2")])) in text


def test_code_printing_a_nul_runs_once_and_its_output_is_stored_with_u_fffd(client):
    """Postgres cannot store U+0000: the output (and the local model's reply quoting it) is stored with
    U+FFFD at once, instead of the run being handed out, and the code run, again and again."""
    assistant = coder(client)
    source = "open('/mnt/data/runs.txt', 'a').write('x')\nprint('a' + chr(0) + 'b')"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": code(source)}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    done = wait_for_run_to_settle(client, thread.id, run.id)
    assert done.status == "completed", done.last_error
    _step, call = tool_step(client, done)
    assert [o.logs for o in call.code_interpreter.outputs] == ["a\ufffdb"]
    assert "a\ufffdb" in reply(client, done).content[0].text.value
    count = ask(
        client, assistant, code("print(f\"ran {len(open('/mnt/data/runs.txt').read())} times\")"), thread.id
    )
    assert "ran 1 times" in reply(client, count).content[0].text.value


def test_input_files_are_readable_and_written_files_come_back_cited(client):
    table = client.files.create(
        file=("sales.csv", b"region,amount\nnorth,3\nsouth,4\n"), purpose="assistants"
    )
    attached = client.files.create(file=("note.txt", b"attached by message"), purpose="assistants")
    assistant = coder(client, tool_resources={"code_interpreter": {"file_ids": [table.id]}})
    source = (
        "import csv\n"
        "rows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
        "total = sum(int(r['amount']) for r in rows)\n"
        "open('/mnt/data/total.txt', 'w').write(f'total={total}')\n"
        "print(total, open('/mnt/data/note.txt').read())"
    )
    attachment = [{"file_id": attached.id, "tools": [{"type": "code_interpreter"}]}]
    run = ask(client, assistant, code(source), attachments=attachment)
    text = reply(client, run).content[0].text
    assert "7 attached by message" in text.value
    (path,) = [a for a in text.annotations if a.type == "file_path"]
    assert path.text == "sandbox:/mnt/data/total.txt" == text.value[path.start_index : path.end_index]
    made = client.files.retrieve(path.file_path.file_id)
    assert (made.purpose, made.filename) == ("assistants_output", "total.txt")
    assert client.files.content(made.id).read() == b"total=7"


def test_an_upstream_model_gets_the_code_tool_forced_then_reads_the_result(client, upstream):
    """An OpenAI-compatible upstream (a fake) sees the reserved `python` function, forced by
    tool_choice code_interpreter on the first call; the second call carries the execution's output."""
    assistant = client.beta.assistants.create(model="gpt-4o-mini", tools=[{"type": "code_interpreter"}])
    marker = f"m{time.monotonic_ns()}"
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f'[[tools]] {marker} {{"code": "print(2 + 3)"}}'}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"}
    )
    assert run.status == "completed", run.last_error
    _step, call = tool_step(client, run)
    assert call.code_interpreter.input == "print(2 + 3)"
    assert [o.logs for o in call.code_interpreter.outputs] == ["5"]
    assert reply(client, run).content[0].text.value == "Tool results: 5"
    sent = [b for b in upstream.bodies() if marker in json.dumps(b["messages"])]
    assert len(sent) == 2
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["python"]
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "python"}}
    assert sent[1]["tool_choice"] == "auto"
    assert sent[1]["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "5"}


CHART = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [1, 4, 9])\n"
    "plt.savefig('/mnt/data/chart.png')\n"
    "plt.show()"
)


def test_a_figure_shown_and_saved_is_one_image_file_before_the_text(client):
    run = ask(client, coder(client), code(CHART))
    _step, call = tool_step(client, run)
    images = [o for o in call.code_interpreter.outputs if o.type == "image"]
    assert len(images) == 1
    content = reply(client, run).content
    assert [part.type for part in content] == ["image_file", "text"]  # as the hosted API orders them
    assert content[0].image_file.file_id == images[0].image.file_id
    assert client.files.content(images[0].image.file_id).read().startswith(b"\x89PNG")


def test_a_streamed_run_with_a_chart_streams_its_image_file_first_and_the_handler_sees_it_done(target):
    sdk = make_client("openai", target.base, target.key, max_retries=0, timeout=60)

    class Collect(AssistantEventHandler):
        def __init__(self):
            super().__init__()
            self.done, self.kinds, self.text = [], [], ""

        def on_image_file_done(self, image_file):
            self.done.append(image_file.file_id)

        def on_message_delta(self, delta, snapshot):
            self.kinds += [(part.index, part.type) for part in delta.content or []]

        def on_text_done(self, text):
            self.text = text.value

    assistant = sdk.beta.assistants.create(model="local", tools=[{"type": "code_interpreter"}])
    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": code(CHART)}])
    handler = Collect()
    with sdk.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
        (message,) = stream.get_final_messages()
    sdk.close()
    (image,) = [part.image_file.file_id for part in message.content if part.type == "image_file"]
    assert handler.done == [image]
    assert handler.kinds[0] == (0, "image_file") and set(handler.kinds[1:]) == {(1, "text")}
    assert handler.text.startswith("The code ran.")


def test_the_jail_holds_inside_a_run(client):
    source = (
        "import os, socket\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.connect(('127.0.0.1', 5432)); print('NET open')\n"
        "except OSError:\n"
        "    print('NET closed')\n"
        f"print('CHECKOUT', os.path.exists({str(ROOT / 'README.md')!r}), os.path.exists({str(ROOT / 'orchestrator')!r}))\n"
        "print('HOME', os.path.exists('/root'), os.path.exists('/home'))\n"
        "print('ENV', sorted(k for k in os.environ if 'URL' in k or 'KEY' in k or 'TOKEN' in k))"
    )
    text = reply(client, ask(client, coder(client), code(source))).content[0].text.value
    assert "NET closed" in text
    assert "CHECKOUT False False\nHOME False False" in text
    assert "ENV []" in text


@pytest.mark.parametrize("client", ["openai"], indirect=True)  # the wall-time limit is slow to reach
def test_a_memory_bomb_and_a_runaway_loop_end_their_execution_and_the_run_goes_on(client, target):
    assistant = coder(client)
    bomb = ask(client, assistant, code("hog = bytearray(2 * 1024 ** 3)"))
    _step, call = tool_step(client, bomb)
    assert "memory" in call.code_interpreter.outputs[0].logs.lower()
    loop = ask(client, assistant, code("while True:\n    pass"), thread_id=bomb.thread_id)
    _step, call = tool_step(client, loop)
    assert "time" in call.code_interpreter.outputs[0].logs.lower()
    after = ask(client, assistant, code("print('still here')"), thread_id=bomb.thread_id)
    assert "still here" in reply(client, after).content[0].text.value


def test_a_streamed_run_shows_the_code_step_as_it_happens(target):
    sdk = make_async_client("azure", target.base, target.key, max_retries=0, timeout=60)
    source = "for i in range(3):\n    print('line', i)"

    class Collect(AsyncAssistantEventHandler):
        def __init__(self):
            super().__init__()
            self.inputs, self.logs = [], []

        async def on_tool_call_delta(self, delta, snapshot):
            if delta.type == "code_interpreter":
                if delta.code_interpreter.input:
                    self.inputs.append(delta.code_interpreter.input)
                for output in delta.code_interpreter.outputs or []:
                    if output.type == "logs":
                        self.logs.append(output.logs)

    async def main():
        assistant = await sdk.beta.assistants.create(model="local", tools=[{"type": "code_interpreter"}])
        thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": code(source)}])
        handler = Collect()
        async with sdk.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
        ) as stream:
            await stream.until_done()
            run = await stream.get_final_run()
        await sdk.close()
        return handler, run

    handler, run = asyncio.run(main())
    assert run.status == "completed"
    assert len(handler.inputs) >= 2 and "".join(handler.inputs) == source + "\n"
    assert handler.logs == ["line 0\nline 1\nline 2"]


@pytest.mark.parametrize("target", ["stack"], indirect=True)  # workers to kill
def test_a_worker_killed_after_the_code_ran_does_not_run_it_again(target, tmp_path, redis_url):
    """The execution is stored with its step before the model is called again: a worker SIGKILLed in that
    call (a slow model's first-token pause) leaves the code done, and the run ends once, elsewhere."""
    sdk = make_client("openai", target.base, target.key, max_retries=0, timeout=60)
    assistant = coder(sdk)
    thread = sdk.beta.threads.create(
        messages=[
            {
                "role": "user",
                "content": code("import os\nopen('/mnt/data/ran', 'a').write('x')\nprint('ran')"),
            }
        ]
    )
    # Only the slow worker takes this run: the stack's own workers pause while it is claimed.
    with only_a_slow_worker(target.stack, target.database_url, redis_url, tmp_path) as slow_worker:
        run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
            if any(s.type == "tool_calls" and s.status == "completed" for s in steps):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the code step never completed")
        slow_worker.kill()
    run = sdk.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "completed"
    check = ask(sdk, assistant, code("print(open('/mnt/data/ran').read())"), thread_id=thread.id)
    assert "x" in reply(sdk, check).content[0].text.value
    assert "xx" not in reply(sdk, check).content[0].text.value
    steps = sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert [s.type for s in steps.data].count("tool_calls") == 1
    sdk.close()


def test_a_worker_without_a_sandbox_runs_no_code_fails_the_step_and_says_so_at_start(stack, api_key):
    """The suite's shared stack has no ORCHESTRATOR_SANDBOX_URL and no ORCHESTRATOR_CODE_IN_PROCESS."""
    assert "code_interpreter is not available" in (stack.workdir / "worker.log").read_text()
    client = make_client("openai", stack.base, api_key, max_retries=0, timeout=60)
    assistant = client.beta.assistants.create(model="local", tools=[{"type": "code_interpreter"}])
    run = ask(client, assistant, "Run:\n```python\nimport os\nprint(os.environ)\n```")
    step, call = tool_step(client, run)
    assert (step.status, step.last_error.code) == ("failed", "server_error")
    assert step.last_error.message.startswith("The code could not be run: code_interpreter is not available")
    assert "ORCHESTRATOR_SANDBOX_URL" in step.last_error.message
    assert call.code_interpreter.outputs == []
    assert reply(client, run).content[0].text.value == step.last_error.message
    client.close()
