"""UpstreamModel against a real (fake) OpenAI-compatible server over HTTP, through the openai SDK."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.domain.model import Finish, ModelError, ModelRequest, TextDelta, ToolCallDelta, Usage
from orchestrator.providers import model_routes as routes
from orchestrator.providers.upstream import RetryPolicy, UpstreamModel, build_client, close_clients
from orchestrator.settings import Settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.processes import free_port

TIMEOUT = 0.5
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "description": "Now.", "strict": None}},
]


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as server:
        yield server
    close_clients()


@pytest.fixture(autouse=True)
def clean(fake):
    fake.reset()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def model_for(url: str, sleeps: Sleeps | None = None, attempts: int = 3, **target) -> UpstreamModel:
    endpoint = routes.Endpoint(base_url=url, api_key="sk-test", timeout_seconds=TIMEOUT)
    retry = RetryPolicy(attempts=attempts, backoff_seconds=0.01, backoff_max_seconds=0.05)
    return UpstreamModel(
        build_client(endpoint),
        routes.Target(endpoint, "fake-model", **target),
        retry,
        sleeps if sleeps is not None else Sleeps(),
    )


def ask(text: str, **fields) -> ModelRequest:
    return ModelRequest(model="gpt-test", messages=[{"role": "user", "content": text}], **fields)


def text_of(chunks) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def test_a_text_reply_streams_as_deltas_then_usage_then_stop(fake):
    chunks = list(model_for(fake.url).stream(ask("hello there")))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["Echo: ", "hello ", "there"]
    assert chunks[-2:] == [Usage(prompt_tokens=8, completion_tokens=3), Finish("stop")]


def test_the_request_on_the_wire_is_a_streaming_chat_completion_asking_for_usage(fake):
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    request = ask(
        "hi",
        tools=TOOLS,
        tool_choice="required",
        temperature=0.2,
        max_completion_tokens=300,
        response_format=schema,
    )
    list(model_for(fake.url).stream(request))
    (recorded,) = fake.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["Authorization"] == "Bearer sk-test"
    body = recorded.body
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is True
    assert body["tools"][1] == {"type": "function", "function": {"name": "get_time", "description": "Now."}}
    assert body["temperature"] == 0.2 and body["max_completion_tokens"] == 300
    assert body["response_format"] == schema


def test_tool_calls_across_several_indices_arrive_with_their_arguments_intact(fake):
    arguments = {"city": "Paris", "units": "metric", "days": [1, 2, 3]}
    chunks = list(model_for(fake.url).stream(ask(f"[[tools]] {json.dumps(arguments)}", tools=TOOLS)))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    firsts = [c for c in calls if c.name]
    assert [(c.index, c.id, c.name) for c in firsts] == [
        (0, "call_fake0", "get_weather"),
        (1, "call_fake1", "get_time"),
    ]
    for index in (0, 1):
        fragments = [c.arguments for c in calls if c.index == index]
        assert len(fragments) > 2
        assert json.loads("".join(fragments)) == arguments
    assert chunks[-1] == Finish("tool_calls")


def test_parallel_tool_calls_false_reaches_the_upstream(fake):
    chunks = list(model_for(fake.url).stream(ask("[[tools]]", tools=TOOLS, parallel_tool_calls=False)))
    assert {c.index for c in chunks if isinstance(c, ToolCallDelta)} == {0}
    assert fake.requests[0].body["parallel_tool_calls"] is False


def test_without_a_usage_chunk_usage_is_counted_locally(fake):
    chunks = list(model_for(fake.url).stream(ask("[[nousage]] count me please", prompt_tokens=42)))
    usage = next(c for c in chunks if isinstance(c, Usage))
    assert usage.prompt_tokens == 42 and usage.completion_tokens > 0


def test_a_reply_cut_by_max_completion_tokens_finishes_with_length(fake):
    chunks = list(model_for(fake.url).stream(ask("one two three four five", max_completion_tokens=3)))
    assert text_of(chunks) == "Echo: one two "
    assert chunks[-1] == Finish("length")


def test_a_route_can_send_max_tokens_instead_of_max_completion_tokens(fake):
    list(model_for(fake.url, max_tokens_param="max_tokens").stream(ask("hi", max_completion_tokens=5)))
    body = fake.requests[0].body
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body


def test_a_429_is_retried_with_backoff_then_fails_as_rate_limit_exceeded(fake):
    sleeps = Sleeps()
    with pytest.raises(ModelError) as failure:
        list(model_for(fake.url, sleeps).stream(ask("[[429]]")))
    assert failure.value.code == "rate_limit_exceeded" and failure.value.retryable
    assert "rate limited" in failure.value.message and "3 attempts" in failure.value.message
    assert len(fake.requests) == 3
    assert sleeps == [0.0, 0.0]  # the server's Retry-After: 0


def test_a_429_that_clears_on_retry_yields_the_reply(fake):
    chunks = list(model_for(fake.url).stream(ask("[[429x1]] patience")))
    assert text_of(chunks) == "Echo: patience"
    assert len(fake.requests) == 2


def test_a_500_is_retried_with_exponential_backoff_then_fails_as_server_error(fake):
    sleeps = Sleeps()
    with pytest.raises(ModelError) as failure:
        list(model_for(fake.url, sleeps).stream(ask("[[500]]")))
    assert failure.value.code == "server_error"
    assert "HTTP 500" in failure.value.message
    assert len(fake.requests) == 3
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_a_400_fails_as_invalid_prompt_without_a_retry(fake):
    with pytest.raises(ModelError) as failure:
        list(model_for(fake.url).stream(ask("[[400]]")))
    assert failure.value.code == "invalid_prompt" and not failure.value.retryable
    assert "Scripted failure 400" in failure.value.message
    assert len(fake.requests) == 1


def test_an_upstream_silent_before_the_first_token_fails_within_the_timeout(fake):
    started = time.monotonic()
    with pytest.raises(ModelError) as failure:
        list(model_for(fake.url).stream(ask("[[stall:5]]")))
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert failure.value.code == "server_error" and f"nothing for {TIMEOUT:g} s" in failure.value.message
    assert len(fake.requests) == 1


def test_a_stall_after_the_reply_started_fails_without_a_retry(fake):
    received = []
    with pytest.raises(ModelError) as failure:
        for chunk in model_for(fake.url).stream(ask("[[stall-mid:5]] a b c")):
            received.append(chunk)
    assert received == [TextDelta("Echo: ")]
    assert failure.value.code == "server_error" and "already started" in failure.value.message
    assert len(fake.requests) == 1


def test_an_error_event_inside_the_stream_fails_the_call(fake):
    with pytest.raises(ModelError) as failure:
        list(model_for(fake.url).stream(ask("[[error-event]] a b")))
    assert failure.value.code == "server_error" and "Scripted stream error" in failure.value.message


def test_an_unreachable_endpoint_is_retried_then_fails_as_server_error():
    sleeps = Sleeps()
    with pytest.raises(ModelError) as failure:
        list(model_for(f"http://127.0.0.1:{free_port()}/v1", sleeps).stream(ask("hi")))
    assert failure.value.code == "server_error" and "Could not reach" in failure.value.message
    assert len(sleeps) == 2


def test_closing_the_stream_mid_reply_closes_the_connection_promptly(fake):
    stream = model_for(fake.url).stream(ask("[[long]] [[slow:0.02]]"))
    assert isinstance(next(stream), TextDelta) and isinstance(next(stream), TextDelta)
    stream.close()
    assert fake.disconnected.wait(1.0)
    assert fake.disconnects == 1


def test_for_model_routes_by_the_models_file_to_the_upstream_name(fake, tmp_path):
    models_file = tmp_path / "models.yaml"
    models_file.write_text(
        f"routes:\n"
        f"  - match: ['small-*', tiny]\n"
        f"    base_url: {fake.url}\n"
        f"    model: upstream-small\n"
        f"  - match: '*'\n"
        f"    base_url: {fake.url}\n"
    )
    settings = Settings(models_file=str(models_file), openai_base_url=None, upstream_timeout_seconds=TIMEOUT)
    for name in ("small-1", "tiny", "other"):
        list(UpstreamModel.for_model(name, settings).stream(ask("hi")))
    assert [b["model"] for b in fake.bodies()] == ["upstream-small", "upstream-small", "other"]


def test_the_default_endpoint_is_the_sdk_base_url_and_key_from_settings(fake):
    settings = Settings(openai_base_url=fake.url, openai_api_key="sk-default", models_file=None)
    list(UpstreamModel.for_model("gpt-4o-mini", settings).stream(ask("hi")))
    assert fake.requests[0].headers["Authorization"] == "Bearer sk-default"
    assert fake.requests[0].body["model"] == "gpt-4o-mini"


def test_an_azure_route_calls_the_deployment_url_with_the_api_version_and_key(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    models_file = tmp_path / "models.json"
    route = {
        "match": "azure-*",
        "azure_endpoint": fake.root,
        "azure_deployment": "gpt4o-prod",
        "api_version": "2024-10-21",
        "api_key_env": "TEST_AZURE_KEY",
    }
    models_file.write_text(json.dumps({"routes": [route]}))
    settings = Settings(models_file=str(models_file))
    chunks = list(UpstreamModel.for_model("azure-gpt-4o", settings).stream(ask("hi")))
    assert text_of(chunks) == "Echo: hi"
    (recorded,) = fake.requests
    assert recorded.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert recorded.query == {"api-version": "2024-10-21"}
    assert recorded.headers["Api-Key"] == "azure-secret"


def test_a_bad_models_file_fails_the_call_with_the_reason(tmp_path):
    models_file = tmp_path / "models.yaml"
    models_file.write_text("routes:\n  - match: x\n    base_ulr: http://typo\n")
    provider = UpstreamModel.for_model("x", Settings(models_file=str(models_file)))
    with pytest.raises(ModelError) as failure:
        list(provider.stream(ask("hi")))
    assert failure.value.code == "server_error"
    assert str(models_file) in failure.value.message and "base_ulr" in failure.value.message
