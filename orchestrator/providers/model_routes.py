"""The models file: which upstream endpoint serves which model name (docs/models.md).

    routes:
      - match: "gpt-4o*"                 # a model name or fnmatch pattern, or a list of them
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY      # or api_key: ... (not recommended: a secret in a file)
      - match: llama-3.1-8b
        base_url: http://vllm:8000/v1
        model: meta-llama/Llama-3.1-8B-Instruct
        max_tokens_param: max_tokens
      - match: "azure-*"
        azure_endpoint: https://example.openai.azure.com
        azure_deployment: gpt-4o-prod
        api_version: "2024-10-21"
        api_key_env: AZURE_OPENAI_API_KEY

The first route whose pattern matches wins; a model no route matches goes to the default endpoint
(`OPENAI_BASE_URL` / `OPENAI_API_KEY`). The file is read once per process and validated with pydantic;
a bad file raises `RoutesError` with the reason.

`api_key_env` is read from the environment when a model is resolved. That is the one place besides
Settings that reads the environment: which variables hold keys is only known from the file, so Settings
cannot declare them, and keys must not have to be written into the file itself.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.settings import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Self-hosted servers often need no key, but the SDK insists on one.
NO_KEY = "no-key"
# Model streams one process may have open to one endpoint when nothing sizes it (the api, the dev mode).
DEFAULT_MAX_CONNECTIONS = 100


class RoutesError(Exception):
    """The models file is missing, unreadable or invalid, or a route's key variable is not set."""


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: tuple[str, ...] = Field(min_length=1)
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    model: str | None = None
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    api_version: str | None = None
    max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    images: bool = True
    timeout_seconds: float | None = Field(default=None, gt=0)
    # The model's context window in tokens, when known: a Responses request with `truncation: disabled`
    # that does not fit is refused (400), one with `auto` drops its oldest items to fit.
    context_tokens: int | None = Field(default=None, gt=0)
    # Which API the endpoint speaks: OpenAI's (chat completions, embeddings), or a reranker's
    # `POST {base_url}/rerank`, in Cohere's, Jina's and vLLM's shape (`rerank`) or TEI's (`tei-rerank`).
    kind: Literal["openai", "rerank", "tei-rerank"] = "openai"

    @field_validator("match", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> Route:
        if self.api_key and self.api_key_env:
            raise ValueError("give api_key or api_key_env, not both")
        if self.azure_endpoint:
            if self.base_url:
                raise ValueError("an Azure route takes azure_endpoint, not base_url")
            if not self.api_version:
                raise ValueError("an Azure route needs api_version")
        elif self.azure_deployment or self.api_version:
            raise ValueError("azure_deployment and api_version only go with azure_endpoint")
        if self.kind != "openai" and self.azure_endpoint:
            raise ValueError("a rerank route takes base_url, not azure_endpoint")
        return self

    def matches(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.match)


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = ()

    def route_for(self, model: str) -> Route | None:
        return next((route for route in self.routes if route.matches(model)), None)


@dataclass(frozen=True)
class Endpoint:
    """Everything an SDK client is built from; clients are cached per endpoint."""

    base_url: str | None = OPENAI_BASE_URL
    api_key: str = NO_KEY
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    api_version: str | None = None
    timeout_seconds: float = 120.0
    connect_timeout_seconds: float = 10.0
    # The connection pool of its client: one connection per model stream this process may have open.
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass(frozen=True)
class Target:
    """Where one model name goes: the endpoint, the upstream's name for it, and its quirks."""

    endpoint: Endpoint
    model: str
    max_tokens_param: str = "max_completion_tokens"
    images: bool = True
    # Which route this is, as errors name it to a client ("route 2 (llama*)").
    route: str = "the default endpoint"
    kind: str = "openai"


def resolve(model: str, settings: Settings) -> Target:
    """The target for `model`: the first matching route of the models file, else the default endpoint."""
    table = load(settings.models_file) if settings.models_file else ModelsFile()
    route = table.route_for(model)
    if route is None:
        return Target(_default_endpoint(settings), model)
    return Target(
        _endpoint(route, settings),
        route.model or model,
        max_tokens_param=route.max_tokens_param,
        images=route.images,
        route=f"route {table.routes.index(route) + 1} ({', '.join(route.match)})",
        kind=route.kind,
    )


def context_window(model: str, settings: Settings) -> int | None:
    """The model's context window in tokens: the local model's setting, a route's `context_tokens`, or
    None (unknown: nothing is refused here, and an upstream that cannot take the prompt says so)."""
    if model.startswith("local"):
        return settings.local_model_context_tokens
    route = load(settings.models_file).route_for(model) if settings.models_file else None
    return route.context_tokens if route is not None else None


def named_models(settings: Settings) -> list[str]:
    """The model names the routes spell out (patterns with wildcards name no model), in file order."""
    if not settings.models_file:
        return []
    names = [name for route in load(settings.models_file).routes for name in route.match]
    return list(dict.fromkeys(name for name in names if not _WILDCARD.search(name)))


def routed(model: str, settings: Settings) -> bool:
    """Whether a route of the models file matches `model` (else it would go to the default endpoint)."""
    return bool(settings.models_file) and load(settings.models_file).route_for(model) is not None


_WILDCARD = re.compile(r"[*?\[]")


def validate(settings: Settings) -> None:
    """Fail at start-up, not at the first run, when the models file is bad."""
    if settings.models_file:
        load(settings.models_file)


@functools.cache
def load(path: str) -> ModelsFile:
    """Read and validate a models file (YAML, or JSON by a .json suffix). Cached per process."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise RoutesError(f"Cannot read the models file {path}: {error}") from error
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise RoutesError(f"The models file {path} is not valid YAML or JSON: {error}") from error
    try:
        return ModelsFile.model_validate(data if data is not None else {})
    except ValidationError as error:
        raise RoutesError(f"The models file {path} is invalid: {error}") from error


def _default_endpoint(settings: Settings) -> Endpoint:
    return Endpoint(
        base_url=settings.openai_base_url or OPENAI_BASE_URL,
        api_key=settings.openai_api_key or NO_KEY,
        timeout_seconds=settings.upstream_timeout_seconds,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        max_connections=settings.upstream_max_connections or DEFAULT_MAX_CONNECTIONS,
    )


def _endpoint(route: Route, settings: Settings) -> Endpoint:
    default = _default_endpoint(settings)
    same_server = route.base_url is None and route.azure_endpoint is None
    return Endpoint(
        base_url=None if route.azure_endpoint else route.base_url or default.base_url,
        api_key=_key(route) or (default.api_key if same_server else NO_KEY),
        azure_endpoint=route.azure_endpoint,
        azure_deployment=route.azure_deployment,
        api_version=route.api_version,
        timeout_seconds=route.timeout_seconds or settings.upstream_timeout_seconds,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
        max_connections=default.max_connections,
    )


def _key(route: Route) -> str | None:
    if route.api_key_env is None:
        return route.api_key
    key = os.environ.get(route.api_key_env)
    if not key:
        raise RoutesError(
            f"The models file routes {list(route.match)} to a key in ${route.api_key_env}, which is not set."
        )
    return key
