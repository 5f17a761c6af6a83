"""Runs against an OpenAI-compatible upstream (a local fake the test starts), through the real processes."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import tool_runs
from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.fake_upstream import FakeUpstream
from tests.support.polling import wait_for, wait_for_run_to_settle
from tests.support.processes import Stack

pytestmark = pytest.mark.e2e

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def upstream_stack(redis_url, tmp_path_factory):
    with FakeUpstream() as fake, throwaway_database() as database:
        stack = Stack(
            database,
            redis_url,
            tmp_path_factory.mktemp("upstream"),
            OPENAI_BASE_URL=fake.url,
            OPENAI_API_KEY="sk-fake",
            ORCHESTRATOR_CELERY_QUEUE="upstream_e2e",
            ORCHESTRATOR_UPSTREAM_TIMEOUT_SECONDS="20",
            ORCHESTRATOR_UPSTREAM_BACKOFF_SECONDS="0.01",
            ORCHESTRATOR_UPSTREAM_BACKOFF_MAX_SECONDS="0.05",
        )
        try:
            stack.start_api()
            stack.start_worker()
            stack.start_scheduler()
            yield stack, fake
        finally:
            stack.stop()


@pytest.fixture(params=["openai", "azure"])
def up(request, upstream_stack):
    stack, fake = upstream_stack
    client = make_client(request.param, stack.base, stack.create_key("upstream"), max_retries=0, timeout=30)
    assistant = client.beta.assistants.create(model="gpt-4o-mini", instructions="Be helpful.", tools=[TOOL])
    yield client, assistant, fake
    client.close()


def run_text(client, assistant, text, **options):
    return client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": text}]},
        poll_interval_ms=50,
        **options,
    )


def reply(client, run):
    return client.beta.threads.messages.list(run.thread_id, run_id=run.id).data[0]


def test_a_text_run_streams_from_the_upstream_and_stores_its_usage(up):
    client, assistant, fake = up
    run = run_text(client, assistant, "tell me about herons")
    assert run.status == "completed", run.last_error
    assert reply(client, run).content[0].text.value == "Echo: tell me about herons"
    assert run.usage.completion_tokens == 5 and run.usage.prompt_tokens > 0
    sent = fake.bodies()[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
    assert sent["messages"][0] == {"role": "system", "content": "Be helpful."}


def test_tool_calls_from_the_upstream_round_trip_through_submit(up):
    client, assistant, _fake = up
    run = run_text(client, assistant, '[[tools]] lookup {"q": "kingfisher"}')
    assert run.status == "requires_action", run.last_error
    assert tool_runs.calls(run) == [("lookup", '{"q": "kingfisher"}')]
    done = tool_runs.answer(client, run, "BLUE")
    assert done.status == "completed"
    assert reply(client, done).content[0].text.value == "Tool results: BLUE"
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]


def test_an_upstream_rate_limit_fails_the_run_with_rate_limit_exceeded_after_retries(up):
    client, assistant, _fake = up
    run = run_text(client, assistant, f"[[429]] busy {time.monotonic()}")
    assert run.status == "failed"
    assert run.last_error.code == "rate_limit_exceeded" and run.last_error.message


def test_an_upstream_400_fails_the_run_at_once_with_invalid_prompt(up):
    client, assistant, _fake = up
    run = run_text(client, assistant, f"[[400]] bad {time.monotonic()}")
    assert (run.status, run.last_error.code) == ("failed", "invalid_prompt")


def test_a_token_budget_ends_the_run_incomplete(up):
    client, assistant, _fake = up
    run = run_text(client, assistant, "[[long]] go", max_completion_tokens=256)
    assert run.status == "incomplete" and run.incomplete_details.reason == "max_completion_tokens"
    message = reply(client, run)
    assert message.status == "incomplete" and message.incomplete_details.reason == "max_tokens"


def test_cancel_while_the_upstream_is_silent_ends_the_run_within_a_second(up):
    client, assistant, _fake = up
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "[[stall:15]] wait"}]}
    )
    wait_for(
        lambda: client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).status == "in_progress"
    )
    time.sleep(0.3)
    asked = time.monotonic()
    client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    wait_for(
        lambda: client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).status == "cancelled",
        timeout=10,
        interval=0.02,
    )
    assert time.monotonic() - asked < 1.5


def test_the_sdk_stream_helper_relays_upstream_text_deltas(up):
    client, assistant, _fake = up
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "one two three four"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        pieces = list(stream.text_deltas)
    assert len(pieces) == 5 and "".join(pieces) == "Echo: one two three four"


def test_a_nul_from_the_upstream_is_stored_once_as_u_fffd_and_the_model_called_once(up):
    """Postgres cannot store U+0000: the reply's text and a call's arguments holding it are stored (and
    streamed) with U+FFFD, at once, instead of the run being handed out, and the model paid, again and
    again."""
    client, assistant, fake = up
    marker = f"m{time.monotonic_ns()}"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"[[nul]] {marker} hi"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    done = wait_for_run_to_settle(client, thread.id, run.id)
    assert done.status == "completed", done.last_error
    assert reply(client, done).content[0].text.value == f"Echo: \ufffd{marker} \ufffdhi\ufffd"

    asking = client.beta.threads.create(
        messages=[{"role": "user", "content": f'[[nul]] [[tools]] {marker} lookup {{"q": "x"}}'}]
    )
    run = client.beta.threads.runs.create(thread_id=asking.id, assistant_id=assistant.id)
    waiting = wait_for_run_to_settle(client, asking.id, run.id)
    assert waiting.status == "requires_action", waiting.last_error
    (call,) = waiting.required_action.submit_tool_outputs.tool_calls
    assert "\ufffd" in call.function.arguments and "\x00" not in call.function.arguments
    assert sum(marker in json.dumps(body["messages"]) for body in fake.bodies()) == 2  # one call each


# --- the Responses API through the same upstream: items, tools and usage translated both ways -----------


def test_a_response_streams_from_the_upstream_with_its_items_made_chat_messages(up):
    client, _assistant, fake = up
    fake.reset()
    with client.responses.stream(
        model="gpt-4o-mini", instructions="Be helpful.", input="tell me about terns", max_output_tokens=50
    ) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "Echo: tell me about terns"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    sent = fake.bodies()[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True and sent["max_completion_tokens"] == 50
    assert sent["messages"] == [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "tell me about terns"},
    ]


def test_a_responses_function_call_from_the_upstream_and_its_output_go_back_as_chat_tool_messages(up):
    client, _assistant, fake = up
    lookup = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    asked = client.responses.create(
        model="gpt-4o-mini", input='[[tools]] lookup {"q": "egret"}', tools=[lookup]
    )
    [call] = asked.output
    assert (call.type, call.name, call.arguments) == ("function_call", "lookup", '{"q": "egret"}')
    assert fake.bodies()[-1]["tools"] == [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ]
    answered = client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "WHITE"}],
        tools=[lookup],
    )
    assert answered.status == "completed"
    messages = fake.bodies()[-1]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "WHITE"}


def test_a_responses_json_schema_format_reaches_the_upstream_as_its_response_format(up):
    client, _assistant, fake = up
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    text = {"format": {"type": "json_schema", "name": "bird", "schema": schema, "strict": True}}
    client.responses.create(model="gpt-4o-mini", input="a bird", text=text)
    sent = fake.bodies()[-1]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "bird", "schema": schema, "strict": True}}
