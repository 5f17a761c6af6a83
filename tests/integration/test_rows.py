"""Core inserts of the rows every run writes: several rows in one statement on Postgres, the same rows on
SQLite (orchestrator dev) one statement per model."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from orchestrator.db import models, rows
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.db.migrate import upgrade
from orchestrator.domain.ids import new_id
from orchestrator.services.keys import create_key


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request, engine, tmp_path):
    if request.param == "postgres":
        yield engine, make_sessionmaker(engine)
        return
    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    upgrade(url)
    from orchestrator.settings import Settings

    local = make_engine(Settings(database_url=url))
    yield local, make_sessionmaker(local)
    local.dispose()


def statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_thread_and_its_messages_go_in_one_statement_on_postgres_and_read_back_alike(sessions, ctx):
    engine, factory = sessions
    with factory() as session:
        tenant = models.Tenant(id=new_id("tenant"), name=new_id("rows"), created_at=1)
        session.add(tenant)
        session.commit()
        thread = models.Thread(
            id=new_id("thread"), tenant_id=tenant.id, created_at=1, created_us=1, metadata_={"k": "ü"}
        )
        messages = [
            models.Message(
                id=new_id("msg"),
                tenant_id=tenant.id,
                thread_id=thread.id,
                created_at=1,
                created_us=2 + i,
                role="user",
                status="completed",
                content=[{"type": "text", "text": {"value": f"m{i}", "annotations": []}}],
                attachments=[],
                metadata_={},
            )
            for i in range(2)
        ]
        seen = statements(engine)
        rows.add(session, thread, *messages)  # the messages reference the thread inserted with them
        session.commit()
        inserts = [s for s in seen if "INSERT" in s]
        assert len(inserts) == (1 if engine.dialect.name == "postgresql" else 2)
        stored = session.scalars(select(models.Message).where(models.Message.thread_id == thread.id)).all()
        assert sorted(m.content[0]["text"]["value"] for m in stored) == ["m0", "m1"]
        assert session.get(models.Thread, thread.id).metadata_ == {"k": "ü"}


def test_a_new_run_inserted_after_its_thread_gets_its_column_defaults(ctx):
    from orchestrator.db import runs

    tenant_id, _key = create_key(ctx, "rows")
    with ctx.uow() as uow:
        thread = models.Thread(
            id=new_id("thread"), tenant_id=tenant_id, created_at=1, created_us=1, metadata_={}
        )
        run = models.Run(
            id=new_id("run"),
            tenant_id=tenant_id,
            thread_id=thread.id,
            assistant_id="asst_x",
            created_at=1,
            created_us=2,
            status="queued",
            model="local",
            instructions="",
            tools=[],
            metadata_={},
            truncation_strategy={"type": "auto", "last_messages": None},
            tool_choice="auto",
            parallel_tool_calls=True,
        )
        assert runs.insert_new(uow.session, run, window=10, now=5.0, before=(thread,))
        uow.commit()
    with ctx.uow() as uow:
        stored = uow.session.get(models.Run, run.id)
        assert (stored.version, stored.event_seq, stored.turn, stored.search_content) == (1, 0, 0, False)
        assert stored.enqueued_at == 5.0
