"""Stacks of real processes with their own database and Redis, for tests that change settings or break things."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_redis import factories

from tests.conftest import TIMINGS
from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.dev import Dev
from tests.support.fake_upstream import FakeUpstream
from tests.support.processes import Stack
from tests.support.sandbox import LIMITS, SandboxProcess, as_environment, jail_python

fault_redis_proc = factories.redis_proc(port=None, save="")

# A dead worker's lease lapses within 2 s and the sweep looks every half second: fault tests see the run
# handed out again in seconds, not minutes.
FAST_FAILOVER = {"ORCHESTRATOR_LEASE_SECONDS": "2", "ORCHESTRATOR_SWEEP_INTERVAL_SECONDS": "0.5"}


@pytest.fixture
def make_stack(tmp_path, redis_url):
    """Start a private stack: own database; Redis is the shared test Redis unless one is passed."""
    opened: list[tuple[Stack, contextlib.ExitStack]] = []

    def start(
        *,
        workers: int = 1,
        concurrency: int = 2,
        scheduler: bool = True,
        redis: str | None = None,
        **settings: str,
    ) -> Stack:
        exits = contextlib.ExitStack()
        database = exits.enter_context(throwaway_database())
        # Each stack gets its own Celery queue so stacks sharing a Redis never take each other's tasks.
        queue = f"q{len(opened)}_{tmp_path.name[-20:]}"
        stack = Stack(
            database,
            redis or redis_url,
            tmp_path / f"stack{len(opened)}",
            ORCHESTRATOR_CELERY_QUEUE=queue,
            **settings,
        )
        stack.workdir.mkdir()
        opened.append((stack, exits))
        stack.start_api()
        for index in range(workers):
            stack.start_worker(f"worker{index}", concurrency)
        if scheduler:
            stack.start_scheduler()
        return stack

    yield start
    for stack, exits in opened:
        stack.stop()
        exits.close()


def sdk(stack: Stack, flavour: str = "openai"):
    key = stack.create_key("faults")
    return make_client(flavour, stack.base, key, max_retries=0, timeout=30)


@dataclass
class Target:
    """A deployment that runs server-side tools: where it listens, a key, its database, its stack (None
    for `orchestrator dev`), and a way to make another tenant's key."""

    name: str
    base: str
    key: str
    database_url: str
    create_key: Callable[[str], str]
    stack: Stack | None = None


def _code_settings(workdir: Path) -> dict[str, str]:
    return as_environment({**LIMITS, "code_python": jail_python(), "code_state_dir": str(workdir / "state")})


@pytest.fixture(scope="session")
def upstream():
    """The fake OpenAI-compatible model the hosted-tools targets route every non-local model to."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="session", params=["stack", "dev"])
def target(request, tmp_path_factory, redis_url, upstream):
    """The production stack with an `orchestrator sandbox` service and two workers, or `orchestrator dev`
    running code in-process: shared by the Assistants' and the Responses' hosted-tools tests."""
    workdir = tmp_path_factory.mktemp(f"hosted-{request.param}")
    models = {"OPENAI_BASE_URL": upstream.url, "OPENAI_API_KEY": "sk-fake"}
    with contextlib.ExitStack() as exits:
        if request.param == "dev":
            dev = Dev(workdir / "data", workdir / "dev.log", **TIMINGS, **models, **_code_settings(workdir))
            exits.callback(dev.stop)
            database = f"sqlite:///{workdir / 'data' / 'orchestrator.sqlite3'}"
            yield Target("dev", dev.base, dev.key, database, dev.create_key)
            return
        sandbox = SandboxProcess(tmp_path_factory.mktemp("hosted-sandbox")).start()
        exits.callback(sandbox.stop)
        database = exits.enter_context(throwaway_database())
        settings = {"ORCHESTRATOR_SANDBOX_URL": sandbox.url, "ORCHESTRATOR_SANDBOX_TOKEN": sandbox.token}
        stack = Stack(
            database, redis_url, workdir, **TIMINGS, **settings, **models, ORCHESTRATOR_CELERY_QUEUE="hosted"
        )
        exits.callback(stack.stop)
        stack.start_api()
        stack.start_worker("worker0", 8)
        stack.start_worker("worker1", 8)
        stack.start_scheduler()
        yield Target("stack", stack.base, stack.create_key("hosted"), database, stack.create_key, stack)
