"""The relay's own rules, without servers: how an upstream's stream is cut into events, how its failures
map to statuses, how a body is bent to a route, how the local model's chunks become chat objects, and what
the metrics are told."""

from __future__ import annotations

import json

import httpx2
import pytest

from orchestrator.domain.model import Finish, TextDelta, ToolCallDelta, Usage
from orchestrator.providers import passthrough
from orchestrator.providers.model_routes import Endpoint, Target
from orchestrator.relay import wire as chat_wire
from orchestrator.relay.chat import Tally, model_request
from orchestrator.schemas.chat import CreateChatCompletion

TARGET = Target(Endpoint(base_url="http://up/v1", timeout_seconds=7), "up-model", route="route 3 (llama*)")


class Pieces(httpx2.SyncByteStream):
    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    def __iter__(self):
        yield from self.pieces


def streamed(*pieces: bytes) -> httpx2.Response:
    return httpx2.Response(200, stream=Pieces(list(pieces)))


def test_events_are_cut_at_blank_lines_wherever_the_bytes_split():
    text = (
        b'data: {"a":1}\n\n: keep-alive\n\ndata: {"b":2}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    )
    expected = [b'{"a":1}', b'{"b":2}', b"line1\nline2", b"[DONE]"]
    assert list(passthrough.events(streamed(text))) == expected
    assert list(passthrough.events(streamed(*[text[i : i + 1] for i in range(len(text))]))) == expected
    assert list(passthrough.events(streamed(b"data: last without a blank line"))) == [
        b"last without a blank line"
    ]


def status_error(status: int, body: dict | str, headers: dict | None = None) -> httpx2.Response:
    request = httpx2.Request("POST", "http://up/v1/chat/completions")
    if isinstance(body, str):
        return httpx2.Response(status, request=request, headers=headers or {}, text=body)
    return httpx2.Response(status, request=request, headers=headers or {}, json=body)


def envelope(message: str, **fields) -> dict:
    return {
        "error": {
            "message": message,
            "type": fields.get("type"),
            "code": fields.get("code"),
            "param": fields.get("param"),
        }
    }


def test_an_upstream_429_keeps_its_words_and_its_retry_after():
    error = passthrough.refused(
        status_error(
            429,
            envelope("slow down", type="tokens", code="rate_limit_exceeded"),
            {"retry-after": "3", "x-ratelimit-remaining-tokens": "0"},
        ),
        TARGET,
    )
    assert (error.status, error.type, error.code, error.message) == (
        429,
        "tokens",
        "rate_limit_exceeded",
        "slow down",
    )
    assert error.retryable and error.retry_after == 3.0
    assert error.headers == {"retry-after": "3", "x-ratelimit-remaining-tokens": "0"}


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_the_clients_own_mistakes_are_passed_on_with_the_upstreams_status(status):
    error = passthrough.refused(
        status_error(status, envelope("context too long", code="context_length_exceeded", param="messages")),
        TARGET,
    )
    assert (error.status, error.message, error.code, error.param) == (
        status,
        "context too long",
        "context_length_exceeded",
        "messages",
    )
    assert error.type == "invalid_request_error" and not error.retryable


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_our_credentials_refused_or_a_server_failure_is_a_502_naming_the_route(status):
    error = passthrough.refused(status_error(status, "<html>oops</html>"), TARGET)
    assert error.status == 502 and error.code == "upstream_error"
    assert (
        "route 3 (llama*)" in error.message and f"HTTP {status}" in error.message and "oops" in error.message
    )


def test_silence_is_a_504_and_a_broken_stream_a_502():
    assert passthrough.interrupted(httpx2.ReadTimeout("slow"), TARGET).status == 504
    assert "sent nothing for 7 s" in passthrough.timed_out(TARGET).message
    broken = passthrough.interrupted(httpx2.RemoteProtocolError("peer closed"), TARGET)
    assert broken.status == 502 and "route 3" in broken.message
    event = json.loads(passthrough.error_event(broken))
    assert event["error"]["message"] == broken.message and event["error"]["type"] == "server_error"


def test_a_body_is_bent_to_its_route_and_a_stream_always_asks_for_usage():
    body = {
        "model": "llama",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
            }
        ],
        "max_completion_tokens": 9,
        "stream_options": {"include_obfuscation": False},
    }
    quirky = Target(Endpoint(), "meta/llama", max_tokens_param="max_tokens", images=False)
    sent = passthrough.chat_body(body, quirky, stream=True)
    assert sent["model"] == "meta/llama" and sent["max_tokens"] == 9 and "max_completion_tokens" not in sent
    assert sent["messages"] == [{"role": "user", "content": "a"}]
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert body["model"] == "llama" and body["max_completion_tokens"] == 9  # the client's body is left alone
    assert passthrough.chat_body(body, TARGET, stream=False) == {**body, "model": "up-model"}


def test_local_chunks_become_chat_chunks_in_openais_order():
    shaper = chat_wire.Chunks("local", 1700000000, include_usage=True)
    chunks = [
        TextDelta("Hi "),
        ToolCallDelta(0, id="call_1", name="f"),
        ToolCallDelta(0, arguments='{"a":'),
        Usage(5, 3),
        Finish("tool_calls"),
    ]
    shaped = [shaper.first()] + [s for c in chunks if (s := shaper.take(c)) is not None] + [shaper.last()]
    deltas = [s["choices"][0]["delta"] if s["choices"] else None for s in shaped]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi "}
    assert deltas[2] == {
        "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
        ]
    }
    assert deltas[3] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}
    assert shaped[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert shaped[-1]["choices"] == [] and shaped[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert all(s["usage"] is None for s in shaped[:-1]) and len({s["id"] for s in shaped}) == 1
    assert "usage" not in chat_wire.Chunks("local", 0, include_usage=False).first()


def test_a_whole_completion_gathers_text_calls_usage_and_the_finish():
    done = chat_wire.completion(
        "local",
        1,
        [
            ToolCallDelta(0, id="c", name="f"),
            ToolCallDelta(0, arguments="{}"),
            Usage(4, 2),
            Finish("tool_calls"),
        ],
    )
    message = done["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert done["choices"][0]["finish_reason"] == "tool_calls" and done["usage"]["total_tokens"] == 6


def test_the_tally_takes_the_upstreams_usage_or_counts_and_spots_the_usage_only_chunk():
    tally = Tally([{"role": "user", "content": "hello"}], "gpt-4o")
    assert tally.read(b'{"choices":[{"index":0,"delta":{"content":"Hi there"}}],"usage":null}')
    assert not tally.read(b'{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":2}}')
    assert tally.tokens() == (11, 2)
    silent = Tally([{"role": "user", "content": "hello"}], "gpt-4o")
    silent.read(
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}'
    )
    silent.read(b"not json")
    prompt, completion = silent.tokens()
    assert prompt > 0 and completion > 0 and not silent.failed
    silent.read(b'{"error":{"message":"boom"}}')
    assert silent.failed


def test_a_chat_body_becomes_the_local_models_request():
    raw = {
        "model": "local",
        "messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": "call f"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {
                "role": "tool",
                "tool_call_id": "c",
                "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}],
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "f"}},
            {"type": "custom", "custom": {"name": "g"}},
        ],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
        "max_tokens": 12,
        "parallel_tool_calls": False,
    }
    request = model_request("local", CreateChatCompletion.model_validate(raw), raw)
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "tool"]
    assert request.messages[-1]["content"] == "part one two"
    assert [t["function"]["name"] for t in request.tools] == ["f"]
    assert request.tool_choice == "auto" and request.parallel_tool_calls is False
    assert request.max_completion_tokens == 12 and request.prompt_tokens > 0


def test_requests_go_to_openais_shape_or_to_the_azure_deployment_with_its_key():
    openai_style = Target(Endpoint(base_url="http://vllm:8000/v1/", api_key="k1"), "llama")
    assert passthrough._address(openai_style, "/chat/completions") == (
        "http://vllm:8000/v1/chat/completions",
        {},
        {"Authorization": "Bearer k1"},
    )
    azure = Endpoint(
        base_url=None, api_key="k2", azure_endpoint="https://r.openai.azure.com/", api_version="2024-10-21"
    )
    assert passthrough._address(Target(azure, "gpt-4o"), "/embeddings") == (
        "https://r.openai.azure.com/openai/deployments/gpt-4o/embeddings",
        {"api-version": "2024-10-21"},
        {"api-key": "k2"},
    )
    named = Endpoint(base_url=None, azure_endpoint="https://r", azure_deployment="prod", api_version="v")
    assert passthrough._address(Target(named, "gpt-4o"), "/chat/completions")[0] == (
        "https://r/openai/deployments/prod/chat/completions"
    )
