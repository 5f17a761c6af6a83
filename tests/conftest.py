"""Shared fixtures: a throwaway database and Redis per session, and the real processes for e2e."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytest_redis import factories

from tests.support.clients import make_client
from tests.support.databases import throwaway_database
from tests.support.processes import Stack

redis_proc = factories.redis_proc(port=None, save="")


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
def stack(database_url, redis_url, tmp_path_factory):
    """api + worker + scheduler, started as the CLI starts them, shared by the e2e suite."""
    stack = Stack(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("stack"),
        ORCHESTRATOR_LEASE_SECONDS="3",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="1",
        ORCHESTRATOR_REQUEUE_AFTER_SECONDS="3",
    )
    try:
        stack.start_api()
        stack.start_worker()
        stack.start_scheduler()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def api_key(stack):
    return stack.create_key("e2e")


@pytest.fixture(params=["openai", "azure"])
def client(request, stack, api_key):
    """The same suite runs against both SDK client flavours."""
    sdk = make_client(request.param, stack.base, api_key, max_retries=0, timeout=30)
    yield sdk
    sdk.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
