"""Embeddings and models through the official SDK, and the walls the relayed model APIs share with the
Assistants routes: keys, the tenant's rate, the error envelope for bad input, the body limit, metrics."""

from __future__ import annotations

import uuid

import httpx2 as httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.relay.models import local_embeddings_installed
from tests.support.clients import make_client
from tests.support.fake_upstream import embed_text

pytestmark = [pytest.mark.e2e]


@pytest.fixture(params=["openai", "azure"])
def sdk(request, stack, api_key):
    client = make_client(request.param, stack.base, api_key, max_retries=0, timeout=60)
    yield client
    client.close()


def test_a_routed_embedding_model_answers_floats_and_the_sdks_default_base64_alike(sdk, shared_upstream):
    texts = ["the car is red", "a happy doctor"]
    floats = sdk.embeddings.create(model="stub-embed", input=texts, encoding_format="float", dimensions=64)
    assert [item.embedding for item in floats.data] == [embed_text(t) for t in texts]
    assert floats.usage.prompt_tokens == 7
    default = sdk.embeddings.create(model="stub-embed", input=texts)  # the SDK asks for base64
    assert [item.embedding for item in default.data] == [item.embedding for item in floats.data]
    sent = [r.body for r in shared_upstream.sent("a happy doctor")][-2:]
    assert [body.get("encoding_format") for body in sent] == ["float", "base64"]
    assert sent[0]["dimensions"] == 64 and sent[0]["model"] == "stub-embed"
    tokens = sdk.embeddings.create(model="stub-embed", input=[[1, 2, 3], [4]], encoding_format="float")
    assert len(tokens.data) == 2


@pytest.mark.skipif(not local_embeddings_installed(), reason="the local-embeddings extra is not installed")
def test_local_minilm_embeds_in_process_as_unit_vectors_in_both_encodings(stack, api_key):
    client = make_client("openai", stack.base, api_key, max_retries=0, timeout=120)
    floats = client.embeddings.create(
        model="local-minilm", input=["a cat sat on the mat", "stock markets fell"], encoding_format="float"
    )
    vectors = np.array([item.embedding for item in floats.data])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    default = client.embeddings.create(model="local-minilm", input="a cat sat on the mat")
    assert np.allclose(default.data[0].embedding, vectors[0], atol=1e-5)
    assert floats.usage.prompt_tokens > 0 and floats.model == "local-minilm"
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="local-minilm", input="x", dimensions=128)
    assert refused.value.param == "dimensions"
    client.close()


def test_models_lists_the_local_ones_and_each_named_route_and_retrieves_by_pattern(sdk):
    listed = {model.id: model for model in sdk.models.list()}
    assert {"local", "stub", "stub-renamed"} <= set(listed)
    assert not any("*" in name for name in listed)
    assert listed["local"].owned_by == "orchestrator" and listed["stub"].owned_by == "upstream"
    assert ("local-minilm" in listed) == local_embeddings_installed()
    assert sdk.models.retrieve("stub-anything").id == "stub-anything"
    assert sdk.models.retrieve("local-fast").object == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("gpt-unknown")
    assert missing.value.code == "model_not_found"


# --- the walls -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat.completions.create(model="local", messages=[{"role": "user", "content": "hi"}]),
        lambda c: c.embeddings.create(model="stub", input="hi"),
        lambda c: c.models.list(),
    ],
    ids=["chat", "embeddings", "models"],
)
@pytest.mark.parametrize("flavour", ["openai", "azure"])
def test_an_unknown_key_is_refused_like_everywhere_else(stack, call, flavour):
    client = make_client(flavour, stack.base, "sk-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        call(client)
    client.close()


def test_over_the_tenants_rate_a_chat_call_gets_the_429_envelope(stack):
    name = "rate-" + uuid.uuid4().hex[:8]
    key = stack.create_key(name)
    stack.cli("tenants", "set", name, "--requests-per-second", "2")
    client = make_client("openai", stack.base, key, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="local", messages=messages)
    client.models.list()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="local", messages=messages)
    assert refused.value.type == "requests" and refused.value.response.headers["retry-after"] == "1"
    client.close()


USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "local"}, "messages", "missing_required_parameter"),
        ({"messages": USER}, "model", "missing_required_parameter"),
        ({"model": "local", "messages": []}, "messages", "empty_array"),
        (
            {"model": "local", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "local", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            None,
        ),
        ({"model": "local", "messages": USER, "temperature": 3}, "temperature", "decimal_above_max_value"),
        ({"model": "local", "messages": USER, "n": 0}, "n", "integer_below_min_value"),
        (
            {"model": "local", "messages": USER, "stream_options": {"include_usage": True}},
            "stream_options",
            None,
        ),
        ({"model": "local", "messages": USER, "response_format": {"type": "json_schema"}}, None, None),
        ({"model": "local", "messages": USER, "tools": [{"type": "function"}]}, "tools[0].function", None),
    ],
)
def test_bad_chat_input_gets_a_400_envelope_naming_the_parameter(stack, api_key, body, param, code):
    response = httpx.post(
        f"{stack.base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "stub", "input": ""}, "input"),
        ({"model": "stub", "input": []}, "input"),
        ({"model": "stub", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "stub", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_embeddings_input_gets_a_400_envelope_naming_the_parameter(stack, api_key, body, param):
    response = httpx.post(f"{stack.base}/v1/embeddings", json=body, headers={"api-key": api_key})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_a_body_past_the_limit_is_a_413_envelope(stack, api_key):
    huge = {"model": "local", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    response = httpx.post(
        f"{stack.base}/v1/chat/completions", json=huge, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_calls_are_counted_by_tenant_api_and_model_with_their_tokens(stack, api_key):
    tag = uuid.uuid4().hex[:8]
    local, routed, down = f"local-{tag}", f"stub-{tag}", f"stub-down-{tag}"
    client = make_client("openai", stack.base, api_key, max_retries=0)
    client.chat.completions.create(model=local, messages=USER)
    list(client.chat.completions.create(model=routed, messages=USER, stream=True))
    client.embeddings.create(model=routed, input="hello world")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=down, messages=USER)
    client.close()
    samples = [
        sample
        for family in text_string_to_metric_families(httpx.get(f"{stack.base}/metrics").text)
        for sample in family.samples
        if sample.name.startswith("orchestrator_model_api") and tag in sample.labels.get("model", "")
    ]
    (tenant,) = {s.labels["tenant"] for s in samples}  # one key's calls: one tenant's series
    assert tenant.startswith("tenant_")

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    requests = "orchestrator_model_api_requests_total"
    assert value(requests, api="chat.completions", model=local, status="200") == 1
    assert value(requests, api="chat.completions", model=routed, status="200") == 1
    assert value(requests, api="embeddings", model=routed, status="200") == 1
    assert value(requests, api="chat.completions", model=down, status="502") == 1
    tokens = "orchestrator_model_api_tokens_total"
    assert value(tokens, model=local, direction="in") > 0 and value(tokens, model=local, direction="out") > 0
    assert value(tokens, api="chat.completions", model=routed, direction="out") == 2  # "Echo: hi"
    assert value(tokens, api="embeddings", model=routed, direction="in") == 2
    assert value("orchestrator_model_api_duration_seconds_count", model=routed) == 2
