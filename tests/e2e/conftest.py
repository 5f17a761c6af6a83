"""Stacks of real processes with their own database and Redis, for tests that change settings or break things."""

from __future__ import annotations

import contextlib

import pytest
from pytest_redis import factories

from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.processes import Stack

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
