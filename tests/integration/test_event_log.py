"""The unit of work numbers, stores and publishes run events; the run store's statements number them."""

from __future__ import annotations

import json

import pytest

from orchestrator.db import models, runs
from orchestrator.db.events import events_after
from orchestrator.db.runs import ANYONE
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.lifecycle import RunEvent, RunStatus
from orchestrator.engine import lifecycle
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants
from orchestrator.services import runs as run_service


def new_run(ctx, tenant) -> str:
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "x"}]}}
    )
    return run_service.create_thread_and_run(ctx, tenant, body).run["id"]  # events 1..3


def stored(ctx, run_id) -> list[tuple[int, str]]:
    with ctx.uow() as uow:
        return [(e["seq"], e["event"]) for e in events_after(uow.session, run_id, 0)]


def published(ctx, run_id) -> list[tuple[int, int, str]]:
    return [(e["seq"], e["prev"], e["event"]) for r, e in ctx.bus.published if r == run_id]


def test_events_recorded_before_a_move_are_numbered_by_the_move_itself_and_published_after_commit(
    ctx, tenant
):
    run_id = new_run(ctx, tenant)
    with ctx.uow() as uow:
        uow.events.record(run_id, tenant, RunEvent.STEP_CREATED, {"n": 1})
        uow.events.record(run_id, tenant, RunEvent.STEP_IN_PROGRESS, {"n": 2})
        lifecycle.move(uow, run_id, RunStatus.CANCELLING, ANYONE, ctx.clock.now())
        assert published(ctx, run_id) == []  # nothing out before commit
        uow.commit()
    assert stored(ctx, run_id)[3:] == [
        (4, "thread.run.step.created"),
        (5, "thread.run.step.in_progress"),
        (6, "thread.run.cancelling"),
    ]
    assert published(ctx, run_id) == [
        (4, 3, "thread.run.step.created"),
        (5, 4, "thread.run.step.in_progress"),
        (6, 5, "thread.run.cancelling"),
    ]


def test_events_no_statement_numbered_are_numbered_at_commit(ctx, tenant):
    run_id = new_run(ctx, tenant)
    with ctx.uow() as uow:
        uow.events.record(run_id, tenant, RunEvent.STEP_COMPLETED, {})
        uow.commit()
    assert stored(ctx, run_id)[-1] == (4, "thread.run.step.completed")
    assert published(ctx, run_id)[-1] == (4, 3, "thread.run.step.completed")


def test_a_move_the_table_does_not_allow_raises_and_records_nothing(ctx, tenant):
    run_id = new_run(ctx, tenant)
    with pytest.raises(StaleWrite), ctx.uow() as uow:
        uow.events.record(run_id, tenant, RunEvent.STEP_CREATED, {})
        lifecycle.move(uow, run_id, RunStatus.COMPLETED, ANYONE, ctx.clock.now())  # queued → completed: no
    assert [seq for seq, _ in stored(ctx, run_id)] == [1, 2, 3]


def test_a_statement_that_numbered_fewer_events_than_were_recorded_is_a_bug_caught_before_commit(ctx, tenant):
    run_id = new_run(ctx, tenant)
    with pytest.raises(RuntimeError, match="event numbers"), ctx.uow() as uow:
        row = runs.move(uow.session, run_id, RunStatus.CANCELLING, ANYONE, now=ctx.clock.now(), events=1)
        uow.events.numbered(run_id, tenant, row, 1)
        uow.events.record(run_id, tenant, RunEvent.RUN_CANCELLING, {})
        uow.events.record(run_id, tenant, RunEvent.STEP_CREATED, {})
        uow.commit()
    assert [seq for seq, _ in stored(ctx, run_id)] == [1, 2, 3]


def test_a_new_runs_own_events_are_stored_but_not_published_as_nobody_can_watch_it_yet(ctx, tenant):
    run_id = new_run(ctx, tenant)
    assert stored(ctx, run_id) == [(1, "thread.created"), (2, "thread.run.created"), (3, "thread.run.queued")]
    assert published(ctx, run_id) == []


@pytest.fixture(params=["postgres", "sqlite"])
def any_ctx(request, ctx, tmp_path):
    """The integration context (Postgres), or the same on the SQLite that `orchestrator dev` runs on."""
    if request.param == "postgres":
        return ctx
    from orchestrator.context import Context
    from orchestrator.db.connection import make_engine, make_sessionmaker
    from orchestrator.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    upgrade(url)
    settings = ctx.settings.model_copy(update={"database_url": url})
    engine = make_engine(settings)
    request.addfinalizer(engine.dispose)
    return Context(settings, make_sessionmaker(engine), type(ctx.queue)(), type(ctx.bus)(), ctx.clock)


def test_the_log_stores_the_data_it_publishes_encoded_once(any_ctx):
    from orchestrator.services.keys import create_key

    tenant, _key = create_key(any_ctx, "events")
    run_id = new_run(any_ctx, tenant)
    data = {"text": 'naïve ünïcödé ✓ "quoted"\nline', "nested": {"list": [1, 2.5, None, True]}}
    with any_ctx.uow() as uow:
        uow.events.record(run_id, tenant, RunEvent.STEP_COMPLETED, data)
        uow.commit()
    with any_ctx.uow() as uow:
        assert events_after(uow.session, run_id, 3) == [
            {"seq": 4, "event": "thread.run.step.completed", "data": data}
        ]
    (event,) = [e for r, e in any_ctx.bus.published if r == run_id]
    assert json.loads(event["data_json"]) == data and "ü" in event["data_json"]  # UTF-8, not \u escapes


def test_a_new_run_stores_its_first_events_with_its_own_insert_and_no_event_may_follow_them():
    from orchestrator.db.events import EventLog

    log = EventLog()
    run = models.Run(id="run_x", tenant_id="tenant_x")
    log.record(run.id, run.tenant_id, RunEvent.RUN_CREATED, {"n": 1})
    log.numbered_new(run, 1)
    assert [(e["seq"], e["data_json"]) for e in log.stored_with_run(run.id)] == [(1, '{"n":1}')]
    with pytest.raises(RuntimeError, match="after its events were stored"):
        log.record(run.id, run.tenant_id, RunEvent.RUN_QUEUED, {})
    assert log.committed() == []  # a new run's events: stored, committed, not published
    assert [e["seq"] for e in log.committed_of(run.id)] == [1]
