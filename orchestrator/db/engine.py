"""Engine and session factories. Created per process (after fork in workers), never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import sessionmaker

from orchestrator.db.sqlite import make_sqlite_engine
from orchestrator.settings import Settings


def make_engine(settings: Settings, *, pool_size: int = 10) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        return make_sqlite_engine(url, pool_size)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)
