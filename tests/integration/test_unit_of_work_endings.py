"""How a unit of work ends without commit: one that wrote rolls back; one that only read commits, which keeps
the connection's prepared statements (psycopg drops them all at a ROLLBACK)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from orchestrator.db.connection import make_engine
from orchestrator.db.uow import UnitOfWork
from orchestrator.settings import Settings


def one_connection(database_url):
    engine = make_engine(Settings(database_url=database_url), pool_size=1)
    engine.pool._max_overflow = 0  # every unit of work gets the same connection
    return engine, sessionmaker(engine, expire_on_commit=False, autoflush=False)


def test_a_unit_of_work_that_wrote_and_did_not_commit_leaves_nothing(database_url):
    engine, factory = one_connection(database_url)
    try:
        with UnitOfWork(factory) as uow:
            uow.session.execute(text("CREATE TABLE IF NOT EXISTS scratch (n int)"))
            uow.session.commit()
        with UnitOfWork(factory) as uow:
            uow.session.execute(text("INSERT INTO scratch VALUES (1)"))
        with UnitOfWork(factory) as uow:
            assert uow.session.execute(text("SELECT count(*) FROM scratch")).scalar() == 0
    finally:
        engine.dispose()


def test_reads_keep_the_connections_prepared_statements(database_url):
    engine, factory = one_connection(database_url)
    try:
        # psycopg prepares a query from its sixth execution on a connection.
        for _ in range(7):
            with UnitOfWork(factory) as uow:
                assert uow.session.execute(text("SELECT 41 + 1")).scalar() == 42
        with UnitOfWork(factory) as uow:
            prepared = uow.session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars()
            assert "SELECT 41 + 1" in list(prepared)
    finally:
        engine.dispose()


def test_orm_changes_left_unflushed_are_thrown_away_not_committed(ctx, tenant):
    from orchestrator.db import models
    from orchestrator.schemas.assistants import CreateAssistant
    from orchestrator.services import assistants

    created = assistants.create(ctx, tenant, CreateAssistant(model="local", name="before"))
    with ctx.uow() as uow:
        uow.session.get(models.Assistant, created["id"]).name = "after"  # no flush, no commit
    assert assistants.get(ctx, tenant, created["id"])["name"] == "before"
