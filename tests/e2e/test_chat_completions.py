"""Chat completions through the official SDK (OpenAI and Azure clients, sync and async): the local model
on both targets, and routed models relayed to the shared fake upstream (tests/support/fake_upstream.py,
whose models file the shared stack loads)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import flavour_for, on_both_targets
from tests.support.clients import make_async_client, make_client
from tests.support.polling import wait_for

pytestmark = [pytest.mark.e2e]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def marked(text: str) -> tuple[str, str]:
    marker = "m" + uuid.uuid4().hex[:10]
    return marker, f"{text} {marker}"


@pytest.fixture(params=["openai", "azure"])
def sdk(request, stack, api_key):
    """The shared stack through each client flavour."""
    client = make_client(request.param, stack.base, api_key, max_retries=0, timeout=30)
    yield client
    client.close()


# --- the local model, on both targets ----------------------------------------------------------------


@on_both_targets
def test_the_local_model_echoes_the_latest_user_message_and_counts_its_usage(client):
    messages = [{"role": "developer", "content": "Be brief."}, *user("hello there, world")]
    completion = client.chat.completions.create(model="local", messages=messages)
    (choice,) = completion.choices
    assert choice.message.content == "You said: hello there, world"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert completion.object == "chat.completion" and completion.model == "local"
    assert completion.id.startswith("chatcmpl-")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@on_both_targets
def test_a_stream_arrives_word_by_word_and_ends_with_the_usage_when_asked(client):
    chunks = list(
        client.chat.completions.create(
            model="local",
            messages=user("one two three four"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(words) > 3 and "".join(words) == "You said: one two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1
    unasked = list(client.chat.completions.create(model="local", messages=user("again"), stream=True))
    assert all(c.usage is None and c.choices for c in unasked)


@on_both_targets
def test_tools_are_called_by_name_then_the_outputs_come_back_verbatim(client):
    asked = user('please get_weather and get_time {"city": "Oslo"}')
    completion = client.chat.completions.create(model="local", messages=asked, tools=[WEATHER, TIME])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    single = client.chat.completions.create(
        model="local", messages=asked, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in single.choices[0].message.tool_calls] == ["get_weather"]
    outputs = [{"role": "tool", "tool_call_id": c.id, "content": f"out-{c.function.name}"} for c in calls]
    history = [*asked, choice.message.model_dump(exclude_none=True), *outputs]
    answer = client.chat.completions.create(model="local", messages=history, tools=[WEATHER, TIME])
    assert answer.choices[0].message.content == "Tool results: out-get_weather | out-get_time"


@on_both_targets
def test_streamed_tool_calls_arrive_as_fragments_the_sdk_accumulates(client):
    with client.chat.completions.stream(
        model="local",
        messages=user('get_weather {"city": "Bergen"}'),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Bergen"}
    assert final.choices[0].finish_reason == "tool_calls"


class Stop(BaseModel):
    city: str
    nights: int


class Itinerary(BaseModel):
    title: str
    stops: list[Stop]
    confirmed: bool


@on_both_targets
def test_structured_output_parses_into_the_pydantic_model(client):
    completion = client.chat.completions.parse(
        model="local", messages=user("a week in Norway"), response_format=Itinerary
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Itinerary(title="a week in Norway", stops=[], confirmed=True)
    plain = client.chat.completions.create(
        model="local", messages=user("as json"), response_format={"type": "json_object"}
    )
    assert json.loads(plain.choices[0].message.content) == {"reply": "as json"}


@on_both_targets
def test_max_completion_tokens_cuts_the_reply_with_finish_reason_length(client):
    completion = client.chat.completions.create(
        model="local", messages=user("a long sentence of many words"), max_completion_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens <= 3
    legacy = client.chat.completions.create(model="local", messages=user("a b c d e f"), max_tokens=2)
    assert legacy.choices[0].finish_reason == "length"


@on_both_targets
def test_the_local_model_refuses_more_than_one_choice(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="local", messages=user("hi"), n=2)
    assert refused.value.param == "n" and refused.value.code == "unsupported_value"


@on_both_targets
def test_async_clients_stream_from_the_local_model(server, request):
    async def collect():
        client = make_async_client(flavour_for(request), server.base, server.key, max_retries=0, timeout=30)
        async with client:
            stream = await client.chat.completions.create(
                model="local", messages=user("async hello"), stream=True
            )
            return [c.choices[0].delta.content or "" async for c in stream if c.choices]

    assert "".join(asyncio.run(collect())) == "You said: async hello"


# --- routed models, relayed to the fake upstream -------------------------------------------------------


def test_a_routed_model_is_relayed_plain_with_every_field_passed_on(sdk, shared_upstream):
    marker, text = marked("relay me")
    completion = sdk.chat.completions.create(
        model="stub-1",
        messages=user(text),
        temperature=0.2,
        top_p=0.9,
        stop=["zzz"],
        seed=7,
        n=2,
        user="end-user-1",
        metadata={"purpose": "test"},
        response_format={"type": "json_object"},
        max_completion_tokens=50,
        extra_body={"top_k": 5},
    )
    assert [c.message.content for c in completion.choices] == [f"Echo: {text}"] * 2
    assert completion.usage.completion_tokens == 4
    (sent,) = shared_upstream.sent(marker)
    assert sent.body["model"] == "stub-1" and "stream" not in sent.body
    expected = {"temperature": 0.2, "top_p": 0.9, "stop": ["zzz"], "seed": 7, "n": 2, "user": "end-user-1"}
    assert {key: sent.body[key] for key in expected} == expected
    assert sent.body["metadata"] == {"purpose": "test"} and sent.body["top_k"] == 5
    assert (
        sent.body["response_format"] == {"type": "json_object"} and sent.body["max_completion_tokens"] == 50
    )


def test_a_routed_stream_is_relayed_chunk_by_chunk_with_usage_only_when_asked(sdk, shared_upstream):
    marker, text = marked("stream me")
    chunks = list(sdk.chat.completions.create(model="stub-2", messages=user(text), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Echo: {text}"
    assert all(c.choices for c in chunks), "the usage chunk the relay asked for was passed on"
    (sent,) = shared_upstream.sent(marker)
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    asked = list(
        sdk.chat.completions.create(
            model="stub-2", messages=user(text), stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens == 4


def test_routed_tool_calls_reach_the_client_plain_and_streamed(sdk):
    asked = user('[[tools]] get_weather {"city": "Paris"}')
    plain = sdk.chat.completions.create(model="stub", messages=asked, tools=[WEATHER])
    (call,) = plain.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    with sdk.chat.completions.stream(model="stub", messages=asked, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_route_renames_the_model_and_bends_the_request_to_its_server(sdk, shared_upstream):
    marker, text = marked("look")
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    sdk.chat.completions.create(
        model="stub-renamed", messages=[{"role": "user", "content": content}], max_completion_tokens=20
    )
    (sent,) = shared_upstream.sent(marker)
    assert sent.body["model"] == "upstream-name"
    assert sent.body["max_tokens"] == 20 and "max_completion_tokens" not in sent.body
    assert sent.body["messages"] == [{"role": "user", "content": text}]


def test_the_azure_deployment_path_names_the_model_and_an_azure_route_is_called_the_azure_way(
    stack, api_key, shared_upstream
):
    marker, text = marked("deployed")
    client = openai.AzureOpenAI(
        azure_endpoint=stack.base,
        azure_deployment="stub-azure-prod",
        api_version="2024-10-21",
        api_key=api_key,
    )
    completion = client.chat.completions.create(model="ignored-by-azure", messages=user(text))
    assert completion.choices[0].message.content == f"Echo: {text}"
    (sent,) = shared_upstream.sent(marker)
    assert sent.path == "/openai/deployments/stub-azure-prod/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"} and sent.headers.get("Api-Key") == "sk-fake"
    client.close()


def test_azure_v1_path_serves_chat_completions(stack, api_key):
    client = openai.OpenAI(base_url=stack.base + "/openai/v1", api_key=api_key, max_retries=0)
    assert client.chat.completions.create(model="local", messages=user("v1")).choices[0].message.content == (
        "You said: v1"
    )
    client.close()


@pytest.mark.parametrize("flavour", ["openai", "azure"])
def test_async_clients_stream_from_a_routed_model(stack, api_key, flavour):
    async def collect():
        client = make_async_client(flavour, stack.base, api_key, max_retries=0, timeout=30)
        async with client:
            stream = await client.chat.completions.create(
                model="stub-a", messages=user("async relay"), stream=True
            )
            return [c.choices[0].delta.content or "" async for c in stream if c.choices]

    assert "".join(asyncio.run(collect())) == "Echo: async relay"


# --- upstream failures ---------------------------------------------------------------------------------


def test_an_upstream_429_comes_back_with_its_retry_after(sdk):
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="stub", messages=user("[[429]] busy"))
    assert refused.value.status_code == 429 and refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["retry-after"] == "0"
    assert "Scripted failure 429" in refused.value.message


def test_an_upstream_4xx_is_passed_on_and_a_5xx_is_a_502_naming_the_route(sdk):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="stub", messages=user("[[400]] nope"))
    assert "Scripted failure 400" in bad.value.message
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="stub", messages=user("[[500]] boom"))
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    assert "route 7 (stub, stub-*)" in failed.value.message and "HTTP 500" in failed.value.message


def test_an_unreachable_upstream_is_a_502_naming_the_route(sdk):
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as failed:
            sdk.chat.completions.create(model="stub-down", messages=user("anyone?"), stream=stream)
        assert failed.value.status_code == 502 and failed.value.code == "upstream_unreachable"
        assert "route 2 (stub-down*)" in failed.value.message


def test_a_silent_upstream_is_a_504_after_the_routes_timeout(sdk):
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as silent:
        sdk.chat.completions.create(model="stub-slow", messages=user("[[stall:10]] plain"))
    assert silent.value.status_code == 504 and silent.value.code == "upstream_timeout"
    assert "route 1 (stub-slow*)" in silent.value.message
    # Streamed, the headers have gone out: the silence ends the stream with an error event instead.
    with pytest.raises(openai.APIError) as broken:
        list(
            sdk.chat.completions.create(
                model="stub-slow", messages=user("[[stall:10]] streamed"), stream=True
            )
        )
    assert "sent nothing for 1 s" in broken.value.message
    assert time.monotonic() - started < 8


def test_an_error_inside_the_upstreams_stream_reaches_the_client(sdk):
    with pytest.raises(openai.APIError) as broken:
        list(sdk.chat.completions.create(model="stub", messages=user("[[error-event]] go"), stream=True))
    assert "Scripted stream error" in broken.value.message


@pytest.mark.parametrize("prompt", ["[[stall:20]]", "[[long]] [[slow:0.2]]"])
def test_a_client_that_leaves_cancels_the_upstream_request(stack, api_key, shared_upstream, prompt):
    """Silent (the first token is 20 s away) or mid-stream: the upstream sees its connection close."""
    marker, text = marked(prompt)
    client = make_client("openai", stack.base, api_key, max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="stub", messages=user(text), stream=True)
    if "long" in prompt:
        assert next(iter(stream)).choices[0].delta.role == "assistant"
    left = time.monotonic()
    stream.close()
    client.close()
    wait_for(lambda: any(marker in prompt for prompt in shared_upstream.left), timeout=10)
    assert time.monotonic() - left < 5
