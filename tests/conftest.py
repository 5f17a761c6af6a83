"""Shared fixtures: a throwaway database and Redis per session, and the real processes for e2e."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_redis import factories

from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.dev import Dev
from tests.support.fake_upstream import FakeUpstream
from tests.support.processes import Stack, free_port

redis_proc = factories.redis_proc(port=None, save="")

# Short leases and frequent sweeps, for the shared stack and the shared `orchestrator dev` alike. The local
# model's delay is left at its default (no delay) for both.
TIMINGS = {
    "ORCHESTRATOR_LEASE_SECONDS": "3",
    "ORCHESTRATOR_SWEEP_INTERVAL_SECONDS": "1",
    "ORCHESTRATOR_REQUEUE_AFTER_SECONDS": "3",
    # A small context window, so a Responses request can overflow it without megabytes of input.
    "ORCHESTRATOR_LOCAL_MODEL_CONTEXT_TOKENS": "8000",
}


@pytest.fixture(scope="session")
def database_url():
    with throwaway_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(redis_proc):
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture(scope="session")
def shared_upstream():
    """The fake OpenAI-compatible upstream (tests/support/fake_upstream.py) behind the shared stack and the
    shared `orchestrator dev`."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="session")
def upstream_settings(shared_upstream, tmp_path_factory) -> dict[str, str]:
    """The shared targets' upstream: `stub…` model names are routed to the fake (its `models_file`), and
    it is their default endpoint too, so no model name (Schemathesis generates many) reaches the internet."""
    path = tmp_path_factory.mktemp("routes") / "models.yaml"
    path.write_text(shared_upstream.models_file(free_port()))
    return {
        "OPENAI_BASE_URL": shared_upstream.url,
        "OPENAI_API_KEY": "sk-fake",
        "ORCHESTRATOR_MODELS_FILE": str(path),
        # `ranker: auto` reranks through the fake's `/rerank` (its `rerank_score`), a route of kind rerank.
        "ORCHESTRATOR_RERANK_MODEL": "stub-rerank",
    }


@pytest.fixture(scope="session")
def stack(database_url, redis_url, tmp_path_factory, upstream_settings):
    """api + worker + scheduler, started as the CLI starts them, shared by the e2e suite."""
    stack = Stack(database_url, redis_url, tmp_path_factory.mktemp("stack"), **TIMINGS, **upstream_settings)
    try:
        stack.start_api()
        stack.start_worker()
        stack.start_scheduler()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def api_key(stack):
    return stack.create_key_with_cli("e2e")


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory, upstream_settings):
    """One `orchestrator dev` process, shared by the SDK suite's runs against the embedded mode."""
    workdir = tmp_path_factory.mktemp("dev_server")
    dev = Dev(workdir / "data", workdir / "dev.log", **TIMINGS, **upstream_settings)
    yield dev
    dev.stop()


@dataclass(frozen=True)
class Server:
    """What the SDK suite needs of a target: where it listens, a key, and a way to make another tenant's."""

    base: str
    key: str
    create_key: Callable[[str], str]
    cli: Callable[..., str]


@pytest.fixture(scope="module")
def server(request) -> Server:
    """The production stack, or `orchestrator dev` in the modules marked `on_both_targets`."""
    if getattr(request, "param", "stack") == "dev":
        dev = request.getfixturevalue("dev_server")
        return Server(dev.base, dev.key, dev.create_key, dev.cli)
    stack = request.getfixturevalue("stack")
    return Server(stack.base, request.getfixturevalue("api_key"), stack.create_key, stack.cli)


# Runs each test of a module against both targets, grouped by target within the module.
on_both_targets = pytest.mark.parametrize("server", ["stack", "dev"], indirect=True, scope="module")

# The SDK client flavour that drives each target: every test of an `on_both_targets` module runs once with
# each flavour, one per target (both serve the same routes; the target changes what lies under them). A
# module that sets STACK_CLIENT = "azure" swaps the pairing, so each pairing runs somewhere in the suite.
OTHER_FLAVOUR = {"openai": "azure", "azure": "openai"}


def flavour_for(request) -> str:
    on_stack = getattr(request.module, "STACK_CLIENT", "openai")
    callspec = getattr(request.node, "callspec", None)
    target = callspec.params.get("server", "stack") if callspec else "stack"
    return on_stack if target == "stack" else OTHER_FLAVOUR[on_stack]


@pytest.fixture
def client(request, server):
    """The official SDK's client, of the flavour paired with the test's target."""
    sdk = make_client(flavour_for(request), server.base, server.key, max_retries=0, timeout=30)
    yield sdk
    sdk.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
