"""The models file: loading, validation and first-match routing."""

from __future__ import annotations

import json

import pytest

from orchestrator.providers import model_routes as routes
from orchestrator.providers.model_routes import NO_KEY, OPENAI_BASE_URL, RoutesError, resolve
from orchestrator.settings import Settings

EXAMPLE = """
routes:
  - match: "gpt-4o*"
    base_url: https://api.openai.com/v1
    api_key_env: TEST_ROUTES_OPENAI_KEY
  - match: [llama-3.1-8b, "llama-*"]
    base_url: http://vllm:8000/v1
    model: meta-llama/Llama-3.1-8B-Instruct
    max_tokens_param: max_tokens
    images: false
    timeout_seconds: 300
  - match: "azure-*"
    azure_endpoint: https://example.openai.azure.com
    azure_deployment: gpt-4o-prod
    api_version: "2024-10-21"
    api_key: azure-key
  - match: "*-mini"
    model: renamed-mini
"""


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("TEST_ROUTES_OPENAI_KEY", "sk-from-env")
    path = tmp_path / "models.yaml"
    path.write_text(EXAMPLE)
    return Settings(
        models_file=str(path),
        openai_base_url="http://default/v1",
        openai_api_key="sk-default",
        upstream_timeout_seconds=60,
    )


def write(tmp_path, text: str, name: str = "models.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_first_matching_route_wins(settings):
    target = resolve("gpt-4o-mini", settings)  # also matches "*-mini", further down
    assert target.endpoint.base_url == "https://api.openai.com/v1"
    assert target.model == "gpt-4o-mini"


def test_a_route_key_can_come_from_the_environment_variable_it_names(settings):
    assert resolve("gpt-4o", settings).endpoint.api_key == "sk-from-env"


def test_a_self_hosted_route_renames_the_model_and_carries_its_quirks(settings):
    target = resolve("llama-3.1-70b", settings)
    assert (target.endpoint.base_url, target.model) == (
        "http://vllm:8000/v1",
        "meta-llama/Llama-3.1-8B-Instruct",
    )
    assert (target.max_tokens_param, target.images, target.endpoint.timeout_seconds) == (
        "max_tokens",
        False,
        300,
    )
    assert target.endpoint.api_key == NO_KEY


def test_an_azure_route_resolves_to_an_azure_endpoint(settings):
    endpoint = resolve("azure-gpt-4o", settings).endpoint
    assert endpoint.base_url is None
    assert (endpoint.azure_endpoint, endpoint.azure_deployment, endpoint.api_version, endpoint.api_key) == (
        "https://example.openai.azure.com",
        "gpt-4o-prod",
        "2024-10-21",
        "azure-key",
    )


def test_a_route_without_a_server_keeps_the_default_endpoint_and_its_key(settings):
    target = resolve("o4-mini", settings)
    assert (target.endpoint.base_url, target.endpoint.api_key, target.model) == (
        "http://default/v1",
        "sk-default",
        "renamed-mini",
    )


def test_a_model_no_route_matches_goes_to_the_default_endpoint(settings):
    target = resolve("claude-or-whatever", settings)
    assert target == routes.Target(
        routes.Endpoint(base_url="http://default/v1", api_key="sk-default", timeout_seconds=60),
        "claude-or-whatever",
    )


def test_without_a_models_file_everything_goes_to_the_sdk_default():
    target = resolve("gpt-4o", Settings(models_file=None, openai_base_url=None, openai_api_key=None))
    assert (target.endpoint.base_url, target.endpoint.api_key) == (OPENAI_BASE_URL, NO_KEY)


def test_patterns_are_case_sensitive_globs(tmp_path):
    settings = Settings(
        models_file=write(tmp_path, "routes:\n  - match: 'Qwen?-*'\n    base_url: http://q/v1\n")
    )
    assert resolve("Qwen3-32B", settings).endpoint.base_url == "http://q/v1"
    assert resolve("qwen3-32B", settings).endpoint.base_url != "http://q/v1"


def test_a_json_models_file_works_the_same(tmp_path):
    path = write(tmp_path, json.dumps({"routes": [{"match": "m", "base_url": "http://j/v1"}]}), "models.json")
    assert resolve("m", Settings(models_file=path)).endpoint.base_url == "http://j/v1"


def test_an_empty_models_file_routes_nothing(tmp_path):
    assert routes.load(write(tmp_path, "")).routes == ()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("routes:\n  - match: x\n    base_ulr: http://typo\n", "base_ulr"),
        ("routes:\n  - base_url: http://x\n", "match"),
        ("routes:\n  - match: []\n", "match"),
        ("routes:\n  - match: x\n    api_key: a\n    api_key_env: B\n", "not both"),
        ("routes:\n  - match: x\n    azure_endpoint: https://a\n", "api_version"),
        (
            "routes:\n  - match: x\n    azure_endpoint: https://a\n    api_version: v\n    base_url: http://b\n",
            "not base_url",
        ),
        ("routes:\n  - match: x\n    api_version: v\n", "only go with azure_endpoint"),
        ("routes:\n  - match: x\n    max_tokens_param: max_new_tokens\n", "max_tokens_param"),
        ("routes:\n  - match: x\n    timeout_seconds: 0\n", "timeout_seconds"),
        ("models: []\n", "models"),
        ("routes: [\n", "not valid YAML"),
    ],
)
def test_a_bad_models_file_is_a_clear_error(tmp_path, text, reason):
    path = write(tmp_path, text)
    with pytest.raises(RoutesError) as error:
        routes.validate(Settings(models_file=path))
    assert path in str(error.value) and reason in str(error.value)


def test_a_missing_models_file_is_a_clear_error(tmp_path):
    with pytest.raises(RoutesError, match="Cannot read the models file"):
        routes.validate(Settings(models_file=str(tmp_path / "absent.yaml")))


def test_a_route_whose_key_variable_is_unset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_ROUTES_UNSET_KEY", raising=False)
    path = write(
        tmp_path, "routes:\n  - match: x\n    base_url: http://x/v1\n    api_key_env: TEST_ROUTES_UNSET_KEY\n"
    )
    with pytest.raises(RoutesError, match=r"\$TEST_ROUTES_UNSET_KEY, which is not set"):
        resolve("x", Settings(models_file=path))


def test_the_models_file_is_read_once_per_process(tmp_path):
    path = write(tmp_path, "routes:\n  - match: x\n    base_url: http://first/v1\n")
    assert resolve("x", Settings(models_file=path)).endpoint.base_url == "http://first/v1"
    write(tmp_path, "routes:\n  - match: x\n    base_url: http://second/v1\n")
    assert resolve("x", Settings(models_file=path)).endpoint.base_url == "http://first/v1"
