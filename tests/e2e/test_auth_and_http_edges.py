"""Authentication, the keys CLI, and HTTP edge cases against the real gunicorn server."""

from __future__ import annotations

import uuid

import httpx2 as httpx
import openai
import pytest

from tests.support.clients import make_client

pytestmark = pytest.mark.e2e

AZURE = {"api-version": "2024-05-01-preview"}


def envelope(response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("path", "params"),
    [("/v1/threads", None), ("/openai/threads", AZURE), ("/openai/deployments/gpt-4o/threads", AZURE)],
)
def test_a_request_without_a_key_is_a_401_on_both_url_families(stack, path, params):
    response = httpx.post(stack.base + path, json={}, params=params)
    assert response.status_code == 401
    assert "API key" in envelope(response)["message"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer sk-not-a-real-key"}, {"api-key": "sk-not-a-real-key"}],
    ids=["bearer", "api-key"],
)
def test_a_wrong_key_is_a_401_invalid_api_key_with_either_header(stack, headers):
    for path, params in (("/v1/assistants", None), ("/openai/assistants", AZURE)):
        response = httpx.get(stack.base + path, headers=headers, params=params)
        assert response.status_code == 401
        error = envelope(response)
        assert error["code"] == "invalid_api_key"
        assert "sk-not-a-real-key" not in error["message"]


def test_the_right_key_works_with_either_header(stack, api_key):
    for headers in ({"Authorization": f"Bearer {api_key}"}, {"api-key": api_key}):
        assert httpx.get(stack.base + "/v1/assistants", headers=headers).status_code == 200


@pytest.mark.parametrize("flavour", ["openai", "azure"])
def test_the_sdk_raises_authentication_error_for_a_wrong_key(stack, flavour):
    sdk = make_client(flavour, stack.base, "sk-wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        sdk.beta.threads.create()
    sdk.close()


def test_keys_list_shows_keys_without_revealing_them_and_a_revoked_key_is_refused(stack):
    tenant = f"revoked-{uuid.uuid4().hex[:8]}"
    key = stack.create_key_with_cli(tenant)
    output = stack.cli("keys", "list", "--tenant", tenant)
    key_id, listed_tenant, hint, state = output.strip().split("\t")
    assert key_id.startswith("key_")
    assert (listed_tenant, state) == (tenant, "active")
    assert hint.startswith(key[:7]) and key not in output

    assert "revoked" in stack.cli("keys", "revoke", key_id)
    listed = [line.split("\t") for line in stack.cli("keys", "list").splitlines()]
    assert [key_id, tenant, hint, "revoked"] in listed
    # Never used before revoking, so no authenticator cache can still hold it.
    for flavour in ("openai", "azure"):
        sdk = make_client(flavour, stack.base, key, max_retries=0, timeout=30)
        with pytest.raises(openai.AuthenticationError) as error:
            sdk.beta.threads.create()
        assert error.value.body["code"] == "invalid_api_key"
        sdk.close()


def test_an_unknown_route_is_a_404_envelope_naming_the_method_and_path(stack, api_key):
    response = httpx.get(stack.base + "/v1/nothing/here", headers={"api-key": api_key})
    assert response.status_code == 404
    assert envelope(response)["message"] == "Invalid URL (GET /v1/nothing/here)"


def test_a_wrong_method_is_a_405_envelope(stack, api_key):
    response = httpx.put(stack.base + "/v1/threads", headers={"api-key": api_key}, json={})
    assert response.status_code == 405
    envelope(response)
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/threads/runs", {"POST", "OPTIONS"}),  # it also fits /threads/<thread_id>: not its methods
        ("/openai/threads/runs", {"POST", "OPTIONS"}),
        ("/v1/threads/thread_abc", {"GET", "HEAD", "POST", "DELETE", "OPTIONS"}),
    ],
)
def test_options_advertises_the_methods_of_the_route_the_path_names(stack, api_key, path, allowed):
    response = httpx.options(stack.base + path, headers={"api-key": api_key}, params=AZURE)
    assert response.status_code == 200
    assert {method.strip() for method in response.headers["allow"].split(",")} == allowed


def test_malformed_json_is_a_400_with_the_could_not_parse_message(stack, api_key):
    headers = {"api-key": api_key, "content-type": "application/json"}
    response = httpx.post(stack.base + "/v1/threads", headers=headers, content=b'{"metadata": ')
    assert response.status_code == 400
    assert envelope(response)["message"].startswith("We could not parse the JSON body of your request.")


def test_an_empty_post_body_means_no_parameters(stack, api_key):
    headers = {"api-key": api_key, "content-type": "application/json"}
    response = httpx.post(stack.base + "/v1/threads", headers=headers, content=b"")
    assert response.status_code == 200
    assert response.json()["object"] == "thread"
    assert response.headers["x-request-id"].startswith("req_")


def test_a_body_over_the_limit_is_a_413_whether_its_length_is_declared_or_chunked(stack, api_key):
    limit = 4 * 1024 * 1024
    payload = b'{"metadata": {"k": "' + b"x" * (limit + 16) + b'"}}'
    headers = {"api-key": api_key, "content-type": "application/json"}
    declared = httpx.post(stack.base + "/v1/threads", headers=headers, content=payload, timeout=30)
    assert declared.status_code == 413
    assert envelope(declared)["code"] == "request_too_large"

    def chunks():
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    chunked = httpx.post(stack.base + "/v1/threads", headers=headers, content=chunks(), timeout=30)
    assert chunked.status_code == 413
    envelope(chunked)


def test_a_chunked_body_under_the_limit_is_read_in_full(stack, api_key):
    headers = {"api-key": api_key, "content-type": "application/json"}
    parts = [b'{"metadata": ', b'{"via": "chunks"}}']
    response = httpx.post(stack.base + "/v1/threads", headers=headers, content=iter(parts))
    assert response.status_code == 200
    assert response.json()["metadata"] == {"via": "chunks"}
