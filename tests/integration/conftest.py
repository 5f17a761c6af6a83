"""Integration tier: services against a real Postgres (and, where `any_ctx` asks, the SQLite file
`orchestrator dev` uses), with the queue and bus as in-memory ports."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.context import Context
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.db.migrate import upgrade
from orchestrator.domain.clock import SystemClock
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings


class MovableClock:
    def __init__(self):
        import time

        self.offset = 0.0
        self._time = time

    def now(self) -> float:
        return self._time.time() + self.offset


@pytest.fixture(scope="session")
def engine(database_url):
    engine = make_engine(Settings(database_url=database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def ctx(engine, database_url):
    settings = Settings(
        database_url=database_url, lease_seconds=2, requeue_after_seconds=1, local_model_delay_ms=0
    )
    return Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus(), MovableClock())


@pytest.fixture
def tenant(ctx):
    tenant_id, _key = create_key(ctx, "integration")
    return tenant_id


@pytest.fixture
def sqlite_ctx(tmp_path):
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    upgrade(url)
    settings = Settings(database_url=url, files_dir=str(tmp_path / "files"), lease_seconds=2)
    engine = make_engine(settings)
    yield Context(settings, make_sessionmaker(engine), InMemoryQueue(), InMemoryBus(), SystemClock())
    engine.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def any_ctx(request):
    return request.getfixturevalue("ctx" if request.param == "postgres" else "sqlite_ctx")


@pytest.fixture
def any_tenant(any_ctx):
    return create_key(any_ctx, f"t-{uuid.uuid4().hex[:8]}")[0]
