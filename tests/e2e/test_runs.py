"""The run lifecycle through the official SDK's poll helpers, against both client flavours."""

import threading

import openai
import pytest

from tests.conftest import on_both_targets
from tests.support import tool_runs

pytestmark = [pytest.mark.e2e, on_both_targets]
STACK_CLIENT = "azure"  # the pairing of client flavours and targets swapped (tests/conftest.py)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture
def assistant(client):
    return client.beta.assistants.create(model="local-test", instructions="Be brief.", tools=[WEATHER])


def texts(client, thread_id, run_id=None):
    page = client.beta.threads.messages.list(thread_id, order="asc", **({"run_id": run_id} if run_id else {}))
    return [(m.role, m.content[0].text.value if m.content else "") for m in page.data]


def test_a_text_run_completes_with_one_assistant_message_step_and_usage(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "tell me about otters"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    assert run.instructions == "Be brief."
    assert run.completed_at and run.started_at and run.expires_at is None
    assert run.usage.total_tokens == run.usage.prompt_tokens + run.usage.completion_tokens > 0
    replies = texts(client, thread.id, run.id)
    assert len(replies) == 1 and replies[0][0] == "assistant" and "tell me about otters" in replies[0][1]
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
    assert steps[0].step_details.message_creation.message_id
    assert steps[0].usage.completion_tokens > 0
    step = client.beta.threads.runs.steps.retrieve(steps[0].id, thread_id=thread.id, run_id=run.id)
    assert step.id == steps[0].id


def test_a_tool_run_asks_once_then_completes_with_the_outputs(client, assistant):
    thread, run = tool_runs.ask(client, assistant.id, 'call get_weather for {"city": "Oslo"}')
    assert tool_runs.calls(run) == [("get_weather", '{"city": "Oslo"}')]
    calls = run.required_action.submit_tool_outputs.tool_calls
    done = tool_runs.answer(client, run, "SUNNY-21C")
    assert done.status == "completed" and done.required_action is None
    assert "SUNNY-21C" in texts(client, thread.id, run.id)[0][1]
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [(s.type, s.status) for s in steps] == [
        ("tool_calls", "completed"),
        ("message_creation", "completed"),
    ]
    call = steps[0].step_details.tool_calls[0]
    assert (call.id, call.function.output) == (calls[0].id, "SUNNY-21C")


def test_create_and_run_poll_makes_the_thread_and_runs_it(client, assistant):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi there"}]},
        instructions="Override.",
        poll_interval_ms=50,
    )
    assert run.status == "completed" and run.instructions == "Override."
    assert "hi there" in texts(client, run.thread_id)[-1][1]


def test_run_overrides_and_additional_messages_are_applied(client, assistant):
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model="local-other",
        tools=[],
        additional_instructions="Extra.",
        additional_messages=[{"role": "user", "content": "from additional"}],
        metadata={"k": "v"},
        temperature=0.5,
        top_p=0.9,
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        parallel_tool_calls=False,
        tool_choice="none",
        poll_interval_ms=50,
    )
    assert (run.model, run.tools, run.metadata, run.temperature, run.top_p) == (
        "local-other",
        [],
        {"k": "v"},
        0.5,
        0.9,
    )
    assert run.truncation_strategy.type == "last_messages" and run.parallel_tool_calls is False
    assert run.status == "completed"
    assert "from additional" in texts(client, thread.id)[-1][1]
    runs = client.beta.threads.runs.list(thread.id).data
    assert [r.id for r in runs] == [run.id]
    modified = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"k": "w"})
    assert modified.metadata == {"k": "w"}


def test_cancelling_a_waiting_run_cancels_it_and_its_tool_step(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather please"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    cancelling = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelling.status == "cancelling"
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
    assert final.status == "cancelled" and final.cancelled_at
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [s.status for s in steps] == ["cancelled"]
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert error.value.body["message"] == "Cannot cancel run with status 'cancelled'."


def test_state_conflicts_get_the_contracts_400s(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert error.value.body["message"] == f"Thread {thread.id} already has an active run {run.id}."
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.messages.create(thread.id, role="user", content="more")
    assert error.value.body["message"] == f"Can't add messages to {thread.id} while a run {run.id} is active."
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_nope", "output": "x"}]
        )
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    assert (
        error.value.body["message"] == f"Expected tool outputs for call_ids ['{call_id}'], got ['call_nope']"
    )
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call_id, "output": "ok"}],
        poll_interval_ms=50,
    )
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_id, "output": "x"}]
        )
    assert error.value.body["message"] == f'Runs in status "{done.status}" do not accept tool outputs.'
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_missing")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve("run_missing", thread_id=thread.id)


def test_two_concurrent_submits_have_exactly_one_winner(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    results, barrier = [], threading.Barrier(4)

    def submit():
        barrier.wait()
        try:
            client.beta.threads.runs.submit_tool_outputs(
                run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_id, "output": "o"}]
            )
            results.append("ok")
        except openai.BadRequestError:
            results.append("400")

    workers = [threading.Thread(target=submit) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(results) == ["400", "400", "400", "ok"]
    final = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
    assert final.status == "completed"
    assert len(texts(client, thread.id, run.id)) == 1


def test_the_poll_helpers_get_an_integer_poll_interval(client, assistant):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    raw = client.beta.threads.runs.with_raw_response.create(thread_id=thread.id, assistant_id=assistant.id)
    assert int(raw.headers["openai-poll-after-ms"]) > 0
    client.beta.threads.runs.poll(raw.parse().id, thread_id=thread.id, poll_interval_ms=50)
