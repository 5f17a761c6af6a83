"""The Responses API through the official SDK's own methods and helpers (responses.create, .stream,
.retrieve(stream=True, starting_after=…), .cancel, .input_items.list, .input_tokens.count), against the
production stack and `orchestrator dev`, with the OpenAI, Azure and Azure-v1 clients, sync and async."""

from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import on_both_targets
from tests.support.clients import make_async_client, make_client
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e, on_both_targets]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TEXT_EVENTS = [
    "response.created",
    "response.queued",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def events_of(stream) -> list:
    return [event for event in stream]


def test_a_plain_create_answers_the_completed_response_with_every_field(client):
    response = client.responses.create(
        model="local",
        input="tell me about otters",
        instructions="Be brief.",
        metadata={"team": "river"},
        temperature=0.5,
        text={"format": {"type": "text"}},
        tool_choice="none",
        parallel_tool_calls=False,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.completed_at is not None
    assert response.output_text == "You said: tell me about otters"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert (response.instructions, response.metadata, response.temperature) == (
        "Be brief.",
        {"team": "river"},
        0.5,
    )
    assert (response.tool_choice, response.parallel_tool_calls, response.store) == ("none", False, True)
    assert response.background is False and response.previous_response_id is None
    assert response.truncation == "disabled" and response.error is None
    assert client.responses.retrieve(response.id).model_dump() == response.model_dump()


def test_the_stream_helper_reads_every_event_in_order_with_dense_sequence_numbers(client):
    with client.responses.stream(model="local", input="stream these words to me") as stream:
        events = events_of(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events if e.type != "response.output_text.delta"] == TEXT_EVENTS
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "You said: stream these words to me"
    assert final.status == "completed" and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_a_background_response_is_queued_at_once_then_polled_and_replayed(client):
    created = client.responses.create(model="local", input="in the background", background=True)
    assert created.status == "queued" and created.background is True and created.output == []
    done = wait_for(
        lambda: (r := client.responses.retrieve(created.id)).status == "completed" and r, timeout=20
    )
    # The stream helper replays from response.created and filters by its cursor itself (contract §7.5).
    with client.responses.stream(response_id=created.id, starting_after=3) as stream:
        replayed = events_of(stream)
        assert stream.get_final_response().output_text == done.output_text
    assert replayed[0].sequence_number == 4
    # The raw path gets the suffix only, from the server.
    raw = client.responses.retrieve(created.id, stream=True, starting_after=3)
    suffix = [event.sequence_number for event in raw]
    assert suffix == [e.sequence_number for e in replayed]


def test_function_tools_end_the_response_with_a_call_that_the_next_response_answers(client):
    asked = client.responses.create(model="local", input='get_weather {"city": "Oslo"}', tools=[WEATHER])
    assert asked.status == "completed"
    [call] = asked.output
    assert (call.type, call.name, call.arguments, call.status) == (
        "function_call",
        "get_weather",
        '{"city": "Oslo"}',
        "completed",
    )
    answered = client.responses.create(
        model="local",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "SUNNY-21C"}],
        tools=[WEATHER],
    )
    assert "SUNNY-21C" in answered.output_text
    assert answered.previous_response_id == asked.id and answered.instructions is None


def test_a_streamed_function_call_keeps_its_identity_from_added_to_done(client):
    with client.responses.stream(
        model="local", input='get_weather {"city": "Rome"}', tools=[WEATHER]
    ) as stream:
        events = events_of(stream)
        final = stream.get_final_response()
    names = [e.type for e in events]
    assert (
        "response.function_call_arguments.delta" in names and "response.function_call_arguments.done" in names
    )
    added = next(e for e in events if e.type == "response.output_item.added")
    done = next(e for e in events if e.type == "response.output_item.done")
    assert (added.item.call_id, added.item.id) == (done.item.call_id, done.item.id)
    assert final.output[0].arguments == '{"city": "Rome"}'


def test_max_output_tokens_ends_the_response_incomplete(client):
    response = client.responses.create(model="local", input="word " * 60, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens <= 16


def test_input_items_list_pages_through_the_sdk_and_token_counts_match_the_input(client):
    given = [{"role": "user", "content": f"message {n}"} for n in range(5)]
    response = client.responses.create(model="local", input=given)
    listed = list(client.responses.input_items.list(response.id, limit=2, order="asc"))
    assert [item.content[0].text for item in listed] == [f"message {n}" for n in range(5)]
    newest = client.responses.input_items.list(response.id, limit=1)
    assert newest.data[0].content[0].text == "message 4"  # desc by default
    counted = client.responses.input_tokens.count(model="local", input=given)
    assert counted.input_tokens == response.usage.input_tokens


def test_unstored_responses_are_not_kept_and_cannot_be_chained(client):
    response = client.responses.create(model="local", input="forget me", store=False)
    assert response.status == "completed" and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as error:
        client.responses.create(model="local", input="and?", previous_response_id=response.id)
    assert error.value.body["code"] == "previous_response_not_found"


def test_bad_requests_get_the_envelope_and_change_nothing(client):
    with pytest.raises(openai.BadRequestError) as both:
        client.responses.create(
            model="local", input="x", previous_response_id="resp_x", conversation="conv_x"
        )
    assert "conversation" in both.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad_item:
        client.responses.create(model="local", input=[{"role": "robot", "content": "x"}])
    assert bad_item.value.body["param"] == "input[0].role"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="local", input="x", max_output_tokens=1)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_missing")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("not-a-response-id")


def test_a_context_window_overflow_is_refused_unless_truncation_is_auto(client):
    huge = "word " * 9_000  # more than the test deployments' 8,000-token window (tests/conftest.py)
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="local", input=huge)
    assert error.value.body["code"] == "context_length_exceeded"
    fitted = client.responses.create(model="local", input=huge, truncation="auto", max_output_tokens=16)
    assert fitted.status == "incomplete" and fitted.error is None  # the reply was cut, nothing refused


def test_cancel_is_for_background_responses_and_is_idempotent_on_the_end(client):
    plain = client.responses.create(model="local", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)
    background = client.responses.create(model="local", input="hi", background=True)
    wait_for(lambda: client.responses.retrieve(background.id).status == "completed", timeout=20)
    assert client.responses.cancel(background.id).status == "completed"  # ended already: the final object
    assert client.responses.cancel(background.id).status == "completed"


def test_delete_removes_the_response_and_another_tenant_sees_nothing(client, server, request):
    response = client.responses.create(model="local", input="short lived")
    other = make_client("openai", server.base, server.create_key(f"other-{request.node.name[-20:]}"))
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="local", input="x", previous_response_id=response.id)
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_the_azure_v1_path_and_the_async_client_serve_the_same_api(server):
    sync = make_client("azure_v1", server.base, server.key, max_retries=0)
    assert sync.responses.create(model="local", input="via v1").output_text == "You said: via v1"

    async def streamed() -> tuple[list[int], str]:
        client = make_async_client("azure_v1", server.base, server.key, max_retries=0)
        async with client.responses.stream(model="local", input="async words") as stream:
            numbers = [event.sequence_number async for event in stream]
            final = await stream.get_final_response()
        await client.close()
        return numbers, final.output_text

    numbers, text = asyncio.run(streamed())
    assert numbers == list(range(len(numbers))) and text == "You said: async words"


def test_the_wire_has_no_id_lines_and_no_top_level_error(server):
    body = {"model": "local", "input": "raw bytes", "stream": True}
    with httpx.stream(
        "POST", server.base + "/v1/responses", json=body, headers={"Authorization": f"Bearer {server.key}"}
    ) as response:
        text = "".join(response.iter_text())
    lines = text.splitlines()
    assert not any(line.startswith("id:") for line in lines)
    datas = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert all("type" in d and "sequence_number" in d and "error" not in d for d in datas)


def test_a_response_in_a_conversation_reads_its_items_and_adds_its_own_once_done(client):
    conversation = client.conversations.create(items=[{"role": "user", "content": "earlier words"}])
    response = client.responses.create(model="local", input="now", conversation={"id": conversation.id})
    assert response.conversation.id == conversation.id and response.output_text == "You said: now"
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    texts = [(item.role, item.content[0].text) for item in items]
    assert texts == [("user", "earlier words"), ("user", "now"), ("assistant", "You said: now")]
    assert items[2].id == response.output[0].id
    counted = client.responses.input_tokens.count(model="local", input="next", conversation=conversation.id)
    assert (
        counted.input_tokens > client.responses.input_tokens.count(model="local", input="next").input_tokens
    )


def test_an_idempotency_key_gives_every_retry_the_first_response_whatever_the_mode(client, request):
    key = f"resp-{request.node.name[-30:]}"
    for mode, options in (("plain", {}), ("background", {"background": True})):
        headers = {"Idempotency-Key": f"{key}-{mode}"}
        first = client.responses.create(model="local", input=f"once {mode}", extra_headers=headers, **options)
        again = client.responses.create(model="local", input=f"once {mode}", extra_headers=headers, **options)
        assert again.id == first.id
    headers = {"Idempotency-Key": f"{key}-stream"}
    with client.responses.stream(model="local", input="once streamed", extra_headers=headers) as stream:
        first = stream.get_final_response()
    with client.responses.stream(model="local", input="once streamed", extra_headers=headers) as stream:
        again = stream.get_final_response()  # the first attempt's stream again, from response.created
    assert again.id == first.id and again.output_text == first.output_text


class Bird(BaseModel):
    name: str
    wingspan_cm: int
    migrates: bool
    seen_in: list[str]


def test_parse_gives_a_parsed_object_built_from_the_schema_streamed_or_not(client):
    parsed = client.responses.parse(model="local", input="a kingfisher", text_format=Bird)
    assert parsed.output_parsed == Bird(name="a kingfisher", wingspan_cm=0, migrates=True, seen_in=[])
    with client.responses.stream(model="local", input="a heron", text_format=Bird) as stream:
        final = stream.get_final_response()
    assert final.output_parsed.name == "a heron"
    loose = client.responses.create(model="local", input="hi", text={"format": {"type": "json_object"}})
    assert json.loads(loose.output_text) == {"reply": "hi"}
