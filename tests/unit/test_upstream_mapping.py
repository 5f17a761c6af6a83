"""The request mapping (ModelRequest → chat.completions.create arguments) and the failure mapping, with no
network."""

from __future__ import annotations

import httpx2
import openai
import pytest

from orchestrator.domain.model import ModelRequest
from orchestrator.providers import model_routes as routes
from orchestrator.providers.upstream import (
    EmptyStream,
    RetryPolicy,
    build_client,
    chat_params,
    classify,
    client_for,
    close_clients,
    response_format,
    tool_choice,
)

TARGET = routes.Target(routes.Endpoint(base_url="http://upstream.test/v1"), "served-name")
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object"}, "strict": None},
}


def request(**fields) -> ModelRequest:
    return ModelRequest(model="asked-name", messages=[{"role": "user", "content": "hi"}], **fields)


def test_a_plain_request_streams_with_usage_under_the_upstream_model_name():
    assert chat_params(request(), TARGET) == {
        "model": "served-name",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_function_tools_pass_through_without_null_fields_and_other_tools_are_dropped():
    params = chat_params(request(tools=[WEATHER, {"type": "file_search"}]), TARGET)
    assert params["tools"] == [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    assert params["tool_choice"] == "auto" and params["parallel_tool_calls"] is True


def test_tool_choice_and_parallel_tool_calls_are_not_sent_without_tools():
    params = chat_params(request(tool_choice="required", parallel_tool_calls=False), TARGET)
    assert "tool_choice" not in params and "parallel_tool_calls" not in params and "tools" not in params


def test_parallel_tool_calls_false_is_sent_with_tools():
    assert (
        chat_params(request(tools=[WEATHER], parallel_tool_calls=False), TARGET)["parallel_tool_calls"]
        is False
    )


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("none", "none"),
        ("auto", "auto"),
        ("required", "required"),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "function", "function": {"name": "weather"}},
        ),
        ({"type": "file_search"}, "auto"),
        (None, None),
        ("bogus", None),
    ],
)
def test_tool_choice_maps_to_the_chat_completions_shape(choice, sent):
    assert tool_choice(choice) == sent


def test_a_null_tool_choice_is_left_to_the_upstream_default():
    assert "tool_choice" not in chat_params(request(tools=[WEATHER], tool_choice=None), TARGET)


@pytest.mark.parametrize("value", [None, "auto", {"type": "text"}])
def test_default_response_formats_are_not_sent(value):
    assert response_format(value) is None
    assert "response_format" not in chat_params(request(response_format=value), TARGET)


def test_json_object_and_json_schema_response_formats_pass_through():
    schema = {"name": "answer", "description": None, "schema": {"type": "object"}, "strict": True}
    assert response_format({"type": "json_object"}) == {"type": "json_object"}
    assert response_format({"type": "json_schema", "json_schema": schema}) == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }


def test_sampling_and_the_completion_budget_are_sent_only_when_set():
    params = chat_params(request(temperature=0.0, top_p=0.5, max_completion_tokens=256), TARGET)
    assert (params["temperature"], params["top_p"], params["max_completion_tokens"]) == (0.0, 0.5, 256)
    assert not {"temperature", "top_p", "max_completion_tokens"} & set(chat_params(request(), TARGET))


def test_a_route_that_only_knows_max_tokens_gets_max_tokens():
    target = routes.Target(TARGET.endpoint, "m", max_tokens_param="max_tokens")
    params = chat_params(request(max_completion_tokens=300), target)
    assert params["max_tokens"] == 300 and "max_completion_tokens" not in params


def test_image_parts_are_kept_for_upstreams_that_see_and_flattened_for_those_that_do_not():
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "http://x/a.png"}},
    ]
    req = ModelRequest(model="m", messages=[{"role": "user", "content": parts}])
    assert chat_params(req, TARGET)["messages"][0]["content"] == parts
    blind = routes.Target(TARGET.endpoint, "m", images=False)
    assert chat_params(req, blind)["messages"][0] == {"role": "user", "content": "what is this?"}


def test_tool_rounds_pass_through_as_assistant_tool_calls_and_tool_messages():
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]  # fmt: skip
    assert chat_params(ModelRequest(model="m", messages=messages), TARGET)["messages"] == messages


# --- failures ---------------------------------------------------------------------------------------

REQUEST = httpx2.Request("POST", "http://upstream.test/v1/chat/completions")


def status_error(status: int, headers: dict | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    body = {"message": f"upstream says {status}", "type": "x"}
    return openai.OpenAI(api_key="k", base_url="http://upstream.test/v1")._make_status_error(
        "Error code", body={"error": body}, response=response
    )


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, "rate_limit_exceeded", True),
        (500, "server_error", True),
        (503, "server_error", True),
        (408, "server_error", True),
        (400, "invalid_prompt", False),
        (413, "invalid_prompt", False),
        (422, "invalid_prompt", False),
        (401, "server_error", False),
        (404, "server_error", False),
    ],
)
def test_http_statuses_map_to_a_last_error_code_and_a_retry_decision(status, code, retryable):
    failure = classify(status_error(status), 10)
    assert (failure.code, failure.retryable) == (code, retryable)
    assert f"upstream says {status}" in failure.reason


def test_a_read_timeout_is_not_retried_but_a_connect_timeout_is():
    def timeout(cause: Exception) -> openai.APITimeoutError:
        error = openai.APITimeoutError(REQUEST)
        error.__cause__ = cause
        return error

    read = classify(timeout(httpx2.ReadTimeout("slow")), 2.5)
    assert (read.code, read.retryable, read.reason) == (
        "server_error",
        False,
        "The upstream model endpoint sent nothing for 2.5 s.",
    )
    assert classify(timeout(httpx2.ConnectTimeout("slow")), 2.5).retryable


def test_an_error_event_coded_as_a_rate_limit_is_a_rate_limit():
    error = openai.APIError(
        "stream error", REQUEST, body={"message": "slow down", "code": "rate_limit_exceeded"}
    )
    failure = classify(error, 1)
    assert (failure.code, failure.retryable, failure.reason) == (
        "rate_limit_exceeded",
        True,
        "The upstream model stream reported an error: slow down",
    )


def test_an_empty_stream_is_a_retryable_server_error():
    failure = classify(EmptyStream("nothing"), 1)
    assert (failure.code, failure.retryable) == ("server_error", True)


def test_the_model_error_says_how_many_attempts_were_made_or_that_the_reply_had_started():
    failure = classify(status_error(500), 1)
    assert failure.error(3, started=False).message.endswith("Gave up after 3 attempts.")
    assert "already started" in failure.error(1, started=True).message
    assert failure.error(1, started=False).message == failure.reason


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(attempts=5, backoff_seconds=1.0, backoff_max_seconds=3.0)
    error = status_error(500)
    assert 0.5 <= policy.delay(1, error) <= 1.0
    assert 1.0 <= policy.delay(2, error) <= 2.0
    assert policy.delay(4, error) == 3.0


def test_backoff_honours_retry_after_up_to_the_cap():
    policy = RetryPolicy(attempts=3, backoff_seconds=1.0, backoff_max_seconds=5.0)
    assert policy.delay(1, status_error(429, {"retry-after": "2"})) == 2.0
    assert policy.delay(1, status_error(429, {"retry-after": "60"})) == 5.0
    assert policy.delay(1, status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert 0.5 <= policy.delay(1, status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) <= 1.0


# --- clients ----------------------------------------------------------------------------------------


def test_clients_never_retry_on_their_own_and_carry_the_endpoint_timeouts():
    client = build_client(
        routes.Endpoint(base_url="http://x/v1", timeout_seconds=7, connect_timeout_seconds=2)
    )
    assert client.max_retries == 0
    assert (client.timeout.read, client.timeout.connect) == (7, 2)
    assert str(client.base_url) == "http://x/v1/"


def test_an_azure_endpoint_gets_an_azure_client():
    endpoint = routes.Endpoint(
        base_url=None,
        azure_endpoint="https://r.openai.azure.com",
        azure_deployment="d",
        api_version="2024-10-21",
    )
    client = build_client(endpoint)
    assert isinstance(client, openai.AzureOpenAI) and client.max_retries == 0
    assert str(client.base_url) == "https://r.openai.azure.com/openai/deployments/d/"


def test_one_client_is_cached_per_endpoint():
    first, second = routes.Endpoint(base_url="http://a/v1"), routes.Endpoint(base_url="http://b/v1")
    try:
        assert client_for(first) is client_for(routes.Endpoint(base_url="http://a/v1"))
        assert client_for(first) is not client_for(second)
    finally:
        close_clients()
