"""`orchestrator dev`: the whole product in one process on SQLite, driven by the SDK and by the example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from openai import AssistantEventHandler

from orchestrator.sandbox.runtime import default_python
from tests.support import tool_runs
from tests.support.clients import make_client
from tests.support.dev import Dev
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "streamed_tool_call.py"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dev")
    server = Dev(workdir / "data", workdir / "dev.log", ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="5")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(dev):
    sdk = dev.client()
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(model="local", instructions="Be brief.", tools=[WEATHER])


def run_example(dev: Dev, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr + dev.process.tail()
    return result.stdout


def reply(client, thread_id: str) -> str:
    return client.beta.threads.messages.list(thread_id, limit=1).data[0].content[0].text.value


def test_the_banner_gives_a_key_and_a_snippet_for_each_client(dev):
    output = dev.output()
    assert f'OpenAI(base_url="{dev.base}/v1", api_key="{dev.key}")' in output
    assert (
        f'AzureOpenAI(azure_endpoint="{dev.base}", api_version="2024-05-01-preview", api_key="{dev.key}")'
        in output
    )


@pytest.mark.parametrize("flavour", ["openai", "azure"])
def test_the_example_streams_a_tool_call_and_the_answer_with_either_client(dev, flavour):
    if flavour == "openai":
        stdout = run_example(dev, "--base-url", dev.base, "--api-key", dev.key)
    else:  # the URL and key from the environment this time
        env = {"ORCHESTRATOR_URL": dev.base, "ORCHESTRATOR_API_KEY": dev.key}
        stdout = run_example(dev, "--client", "azure", env=env)
    lines = stdout.splitlines()
    assert lines[0].startswith(f"{flavour} client, assistant asst_")
    assert 'tool call get_weather({"city": "Oslo"}) -> Oslo: sunny, 21 degrees' in lines
    assert any(line.startswith("assistant: ") and "Oslo: sunny, 21 degrees" in line for line in lines)
    assert re.fullmatch(r"run run_\w+ completed", lines[-1])


def test_a_text_run_completes_through_create_and_poll(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell me about otters"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed" and run.usage.total_tokens > 0
    assert "tell me about otters" in reply(client, thread.id)
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]


def test_a_waiting_tool_run_holds_its_thread_then_completes_with_the_submitted_output(client, assistant):
    thread, run = tool_runs.ask(client, assistant.id, 'get_weather {"city": "Rome"}')
    assert tool_runs.calls(run) == [("get_weather", '{"city": "Rome"}')]
    with pytest.raises(openai.BadRequestError) as error:  # the partial unique index speaks, on SQLite too
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert error.value.body["message"] == f"Thread {thread.id} already has an active run {run.id}."
    done = tool_runs.answer(client, run, "CLOUDY-9C")
    assert done.status == "completed"
    assert "CLOUDY-9C" in reply(client, thread.id)


def test_a_run_cancelled_while_the_model_writes_ends_cancelled_with_its_partial_message(client, assistant):
    words = " ".join(f"word{i}" for i in range(400))  # about two seconds of output at 5 ms a word
    thread = client.beta.threads.create(messages=[{"role": "user", "content": words}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    while client.beta.threads.messages.list(thread.id, limit=1).data[0].role != "assistant":
        time.sleep(0.02)  # wait until the model has started writing
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
    assert run.status == "cancelled" and run.cancelled_at
    message = client.beta.threads.messages.list(thread.id, limit=1).data[0]
    assert message.role == "assistant" and message.status == "incomplete"


def test_a_streamed_run_delivers_the_lifecycle_and_text_deltas(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "stream some words please"}])
    names: list[str] = []

    class Recorder(AssistantEventHandler):
        def on_event(self, event):
            names.append(event.event)

    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Recorder()
    ) as stream:
        text = "".join(stream.text_deltas)
        run = stream.get_final_run()
    assert run.status == "completed" and "stream some words please" in text
    assert names.count("thread.message.delta") > 1
    assert [n for n in names if n != "thread.message.delta"] == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress",
        "thread.message.created", "thread.message.in_progress",
        "thread.message.completed", "thread.run.step.completed", "thread.run.completed",
    ]  # fmt: skip


def test_lists_page_forwards_and_backwards_with_cursors(client):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"m{i}"} for i in range(5)])
    first = client.beta.threads.messages.list(thread.id, order="asc", limit=2)
    assert [m.content[0].text.value for m in first.data] == ["m0", "m1"] and first.has_more
    after = client.beta.threads.messages.list(thread.id, order="asc", limit=2, after=first.last_id)
    assert [m.content[0].text.value for m in after.data] == ["m2", "m3"]
    before = client.beta.threads.messages.list(thread.id, order="asc", limit=2, before=after.first_id)
    assert [m.content[0].text.value for m in before.data] == ["m0", "m1"]
    everything = [m.content[0].text.value for m in client.beta.threads.messages.list(thread.id, limit=2)]
    assert everything == ["m4", "m3", "m2", "m1", "m0"]


def test_concurrent_runs_and_racing_submits_neither_fail_nor_answer_500(dev, client, assistant):
    failures: list[str] = []

    def tool_round(index: int) -> None:
        try:
            thread = client.beta.threads.create(
                messages=[{"role": "user", "content": f"get_weather {index}"}]
            )
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
            )
            call = run.required_action.submit_tool_outputs.tool_calls[0]
            answers = submit_racing(thread.id, run.id, call.id, 3)
            assert sorted(answers) == ["400", "400", "queued"], answers
            done = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=20)
            assert done.status == "completed", done.last_error
        except Exception as error:  # collected and reported by the main thread
            failures.append(f"{index}: {error!r}")

    def submit_racing(thread_id: str, run_id: str, call_id: str, count: int) -> list[str]:
        answers: list[str] = []

        def submit() -> None:
            try:
                run = client.beta.threads.runs.submit_tool_outputs(
                    run_id=run_id,
                    thread_id=thread_id,
                    tool_outputs=[{"tool_call_id": call_id, "output": "x"}],
                )
                answers.append(run.status)
            except openai.BadRequestError:
                answers.append("400")

        racers = [threading.Thread(target=submit) for _ in range(count)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        return answers

    rounds = [threading.Thread(target=tool_round, args=(i,)) for i in range(8)]
    for thread in rounds:
        thread.start()
    for thread in rounds:
        thread.join()
    assert failures == []
    assert "database is locked" not in dev.output()


def test_data_survives_a_restart_on_the_same_data_directory(tmp_path):
    data = tmp_path / "data"
    first = Dev(data, tmp_path / "first.log")
    try:
        with first.client() as client:
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "remember me"}])
            assistant = client.beta.assistants.create(model="local", name="keeper")
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
            assert run.status == "completed"
    finally:
        started = time.monotonic()
        status = first.stop()  # SIGTERM
    assert status == 0 and time.monotonic() - started < 5

    second = Dev(data, tmp_path / "second.log")
    try:
        assert second.key != first.key
        for key in (first.key, second.key):
            with make_client("azure", second.base, key, max_retries=0, timeout=30) as client:
                assert client.beta.assistants.retrieve(assistant.id).name == "keeper"
                assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "completed"
                assert "remember me" in reply(client, thread.id)
    finally:
        second.stop()


def test_a_run_cut_off_by_a_killed_dev_process_finishes_at_once_after_a_restart(tmp_path):
    """The next process owns the data directory, so it resumes the run at start, not after the lease lapses."""
    data = tmp_path / "data"
    slow = {"ORCHESTRATOR_LEASE_SECONDS": "120", "ORCHESTRATOR_REQUEUE_AFTER_SECONDS": "120"}
    first = Dev(data, tmp_path / "first.log", ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="300", **slow)
    try:
        with first.client() as client:
            words = " ".join(f"word{i}" for i in range(40))
            thread = client.beta.threads.create(messages=[{"role": "user", "content": words}])
            assistant = client.beta.assistants.create(model="local")
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            deadline = time.monotonic() + 20
            while not client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data:
                assert time.monotonic() < deadline, first.process.tail()
                time.sleep(0.05)
            time.sleep(0.5)  # a few words into the reply
    finally:
        first.process.kill()
        first.process.popen.wait(10)
        first.stop()

    second = Dev(data, tmp_path / "second.log", ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="0", **slow)
    try:
        with second.client() as client:
            started = time.monotonic()
            while client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status != "completed":
                assert time.monotonic() - started < 15, second.process.tail()
                time.sleep(0.05)
            messages = client.beta.threads.messages.list(thread.id).data
            assert [m.role for m in messages] == ["assistant", "user"]
            assert messages[0].content[0].text.value.count("word39") == 1  # the reply, once
            assert len(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data) == 1
        inspected = httpx.get(
            f"{second.base}/ui/api/runs/{run.id}", headers={"Authorization": f"Bearer {second.key}"}
        ).json()
        assert inspected["internals"]["takeovers"] == 1  # the dead process's lease, taken over once
    finally:
        second.stop()


def test_a_second_dev_process_on_the_same_data_directory_refuses_to_start(dev, tmp_path):
    data = Path(re.search(r"\(database: (.+)/orchestrator\.sqlite3\)", dev.output()).group(1))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "orchestrator"),
            "dev",
            "--port",
            str(free_port()),
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "another `orchestrator dev` is using" in result.stderr


# code_interpreter out of the box: ./scripts/dev as root with this machine's Python, and as a plain user

CODE = "Please run this:\n```python\nimport os\nprint(6 * 7, os.getuid())\n```"
PRIVATE_HOME = (
    os.geteuid() == 0 and default_python().startswith("/root/") and not os.stat("/root").st_mode & 0o001
)


def run_code_block(dev: Dev) -> tuple[object, str]:
    """A run whose local model runs a fenced python block: its tool step and its reply's text."""
    client = dev.client()
    assistant = client.beta.assistants.create(model="local", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": CODE}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed", run
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    (message,) = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    client.close()
    return steps[0], message.content[-1].text.value


def assert_runs_code_then_stop(dev: Dev) -> None:
    """The banner says code_interpreter is ready, and a code block runs in the jail (as uid 1000)."""
    try:
        assert "code_interpreter: ready" in dev.output()
        step, reply = run_code_block(dev)
        assert step.status == "completed"
        assert reply == "The code ran. Output:\n42 1000"
    finally:
        dev.stop()


@pytest.mark.skipif(not PRIVATE_HOME, reason="as root, with the venv's Python under /root (mode 700)")
def test_scripts_dev_as_root_runs_code_with_a_python_under_a_private_home(tmp_path):
    assert_runs_code_then_stop(
        Dev(tmp_path / "data", tmp_path / "dev.log", command=[str(ROOT / "scripts" / "dev")], cwd=ROOT)
    )


def test_dev_as_a_plain_user_runs_code(tmp_path):
    """As root, the plain user is `nobody` running Debian's Python 3.11 on the checkout and its venv."""
    command, data = None, tmp_path / "data"
    if os.geteuid() == 0:
        if not os.path.exists("/usr/bin/python3.11"):
            pytest.skip("no /usr/bin/python3.11 for the plain user")
        data = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own directory is root's alone (0700)
        os.chown(data, 65534, 65534)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        command = [*drop, "/usr/bin/python3.11", "-m", "orchestrator.cli", "dev"]
    site = sysconfig.get_path("purelib")
    try:
        environment = {"PYTHONPATH": f"{ROOT}:{site}", "HOME": str(data)}
        assert_runs_code_then_stop(Dev(data, tmp_path / "dev.log", command=command, cwd=ROOT, **environment))
    finally:
        if command is not None:
            shutil.rmtree(data, ignore_errors=True)


def test_without_bubblewrap_the_banner_says_what_to_install_and_a_code_step_fails_saying_why(tmp_path):
    dev = Dev(tmp_path / "data", tmp_path / "dev.log", PATH="/nonexistent")
    try:
        assert "code_interpreter: NOT available. The code sandbox needs bubblewrap" in dev.output()
        assert "apt-get install bubblewrap" in dev.output()
        step, reply = run_code_block(dev)
        assert step.status == "failed"
        assert step.last_error.code == "server_error"
        assert step.last_error.message.startswith(
            "The code could not be run: The code sandbox needs bubblewrap"
        )
        assert reply == step.last_error.message  # the model was told; it never says "The code ran"
    finally:
        dev.stop()
