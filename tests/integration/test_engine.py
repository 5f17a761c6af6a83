"""The run engine on real Postgres: duplicates, fencing, sweeps and races."""

from __future__ import annotations

import dataclasses
import random
import threading
import time

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from orchestrator.db import models
from orchestrator.db.engine import make_engine, make_sessionmaker
from orchestrator.providers.local import LocalModel
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, engine, lease, runs, sweeper
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings
from tests.support.databases import throwaway_database


def start_run(ctx, tenant, text="hello world", tools=None):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local", tools=tools or []))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": text}]}}
    )
    return runs.create_thread_and_run(ctx, tenant, body).run


def counts(ctx, run_id):
    with ctx.uow() as uow:
        messages = uow.session.scalar(
            select(func.count()).select_from(models.Message).where(models.Message.run_id == run_id)
        )
        steps = uow.session.scalar(
            select(func.count()).select_from(models.RunStep).where(models.RunStep.run_id == run_id)
        )
        status = uow.session.scalar(select(models.Run.status).where(models.Run.id == run_id))
    return status, messages, steps


def test_the_same_task_delivered_twice_at_once_writes_one_message_and_one_step(ctx, tenant):
    run = start_run(ctx, tenant, "many words " * 20)
    slow = LocalModel(delay_ms=5)
    threads = [threading.Thread(target=engine.advance, args=(ctx, run["id"], slow)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.advance(ctx, run["id"], slow)  # a late redelivery finds nothing to do
    assert counts(ctx, run["id"]) == ("completed", 1, 1)


def test_a_worker_whose_lease_was_taken_over_cannot_commit(ctx, tenant):
    counted = REGISTRY.get_sample_value("orchestrator_lease_takeovers_total") or 0
    run = start_run(ctx, tenant, "slow words " * 30)
    first = threading.Thread(target=engine.advance, args=(ctx, run["id"], LocalModel(delay_ms=30)))
    first.start()
    time.sleep(0.3)
    # Make the first worker look dead to the others: its lease lapses.
    with ctx.uow() as uow:
        uow.session.execute(update(models.Run).where(models.Run.id == run["id"]).values(lease_expires_at=0))
        uow.commit()
    engine.advance(ctx, run["id"], LocalModel())
    first.join()
    assert counts(ctx, run["id"]) == ("completed", 1, 1)
    with ctx.uow() as uow:
        takeovers = uow.session.scalar(select(models.Run.takeovers).where(models.Run.id == run["id"]))
    assert takeovers == 1
    assert REGISTRY.get_sample_value("orchestrator_lease_takeovers_total") == counted + 1


def test_the_sweep_re_enqueues_a_queued_run_whose_message_was_lost(ctx, tenant):
    run = start_run(ctx, tenant)
    ctx.queue.enqueued.clear()
    assert sweeper.sweep(ctx)["requeued"] == 0  # too young to be called lost
    ctx.clock.offset = 5
    assert run["id"] in _sweep_ids(ctx)
    engine.advance(ctx, run["id"])
    assert counts(ctx, run["id"])[0] == "completed"


def test_the_sweep_re_enqueues_a_running_run_whose_lease_lapsed(ctx, tenant):
    run = start_run(ctx, tenant)
    with ctx.uow() as uow:
        uow.session.execute(
            update(models.Run)
            .where(models.Run.id == run["id"])
            .values(
                status="in_progress",
                lease_owner="dead-worker",
                lease_expires_at=time.time() - 1,
                enqueued_at=0,
            )
        )
        uow.commit()
    assert run["id"] in _sweep_ids(ctx)


def test_the_sweep_expires_overdue_runs_with_their_tool_step(ctx, tenant):
    tool = {"type": "function", "function": {"name": "lookup"}}
    run = start_run(ctx, tenant, "lookup now", tools=[tool])
    engine.advance(ctx, run["id"])
    assert counts(ctx, run["id"])[0] == "requires_action"
    ctx.clock.offset = ctx.settings.run_expires_seconds + 5
    sweeper.sweep(ctx)
    with ctx.uow() as uow:
        run_row = uow.session.get(models.Run, run["id"])
        step = uow.session.scalar(select(models.RunStep).where(models.RunStep.run_id == run["id"]))
    assert (run_row.status, run_row.required_action, step.status) == ("expired", None, "expired")
    assert step.expired_at is not None


def test_cancel_racing_completion_ends_in_one_consistent_state(ctx, tenant):
    outcomes = set()
    for _attempt in range(12):
        run = start_run(ctx, tenant, "race words " * 10)
        worker = threading.Thread(target=engine.advance, args=(ctx, run["id"], LocalModel(delay_ms=1)))
        worker.start()
        time.sleep(random.uniform(0, 0.03))
        try:
            runs.cancel(ctx, tenant, run["thread_id"], run["id"])
        except Exception as error:  # the run may have completed first
            assert "Cannot cancel run" in str(error)
        worker.join()
        engine.advance(ctx, run["id"])  # a redelivery after the race changes nothing
        status, messages, steps = counts(ctx, run["id"])
        outcomes.add(status)
        assert status in {"completed", "cancelled"}
        assert messages <= 1 and steps <= 1
        with ctx.uow() as uow:
            rows = list(uow.session.scalars(select(models.RunStep).where(models.RunStep.run_id == run["id"])))
            message = uow.session.scalar(select(models.Message).where(models.Message.run_id == run["id"]))
        if status == "completed":
            assert [s.status for s in rows] == ["completed"] and message.status == "completed"
        else:
            assert all(s.status == "cancelled" for s in rows)
            assert message is None or (message.status == "incomplete" and message.content)
    assert outcomes  # at least one outcome was observed


def _sweep_ids(ctx):
    ctx.queue.enqueued.clear()
    sweeper.sweep(ctx)
    return list(ctx.queue.enqueued)


@pytest.fixture(autouse=True)
def _reset_clock(ctx):
    yield
    ctx.clock.offset = 0


def test_a_submit_racing_the_expiry_sweep_never_revives_the_run(ctx, tenant):
    from orchestrator.domain.errors import InvalidRequest
    from orchestrator.schemas.runs import SubmitToolOutputs

    tool = {"type": "function", "function": {"name": "lookup"}}
    seen = set()
    for _attempt in range(8):
        run = start_run(ctx, tenant, "lookup", tools=[tool])
        engine.advance(ctx, run["id"])
        with ctx.uow() as uow:
            row = uow.session.get(models.Run, run["id"])
            call_id = row.required_action["submit_tool_outputs"]["tool_calls"][0]["id"]
            # Due right now: the sweep and the submit race for it.
            uow.session.execute(
                update(models.Run).where(models.Run.id == run["id"]).values(expires_at=int(time.time()))
            )
            uow.commit()
        body = SubmitToolOutputs.model_validate({"tool_outputs": [{"tool_call_id": call_id, "output": "x"}]})
        result = {}

        def submit(run=run, body=body, result=result):
            try:
                runs.submit_tool_outputs(ctx, tenant, run["thread_id"], run["id"], body)
                result["submit"] = "ok"
            except InvalidRequest as error:
                result["submit"] = str(error)

        racers = [threading.Thread(target=submit), threading.Thread(target=sweeper.sweep, args=(ctx,))]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        engine.advance(ctx, run["id"])
        status, messages, _steps = counts(ctx, run["id"])
        seen.add(status)
        assert (
            status == "expired" and result["submit"] == 'Runs in status "expired" do not accept tool outputs.'
        )
        with ctx.uow() as uow:
            step = uow.session.scalar(select(models.RunStep).where(models.RunStep.run_id == run["id"]))
        assert step.status == "expired" and messages == 0


def test_a_heartbeat_that_cannot_renew_for_a_whole_lease_gives_the_run_up(ctx, tenant):
    from orchestrator.services.lease import Heartbeat

    class Unreachable:
        """A session factory for a database that stopped answering."""

        def __call__(self):
            raise ConnectionError("database unreachable")

    broken = type(ctx)(
        ctx.settings.model_copy(update={"lease_seconds": 0.6}), Unreachable(), ctx.queue, ctx.bus
    )
    signalled = threading.Event()
    with Heartbeat(broken, "run_x", "owner") as heartbeat:
        heartbeat.on_signal = signalled.set
        assert signalled.wait(5)
    assert heartbeat.lost.is_set() and not heartbeat.cancelled.is_set()


@pytest.fixture
def own_ctx(ctx):
    """A context on a database of its own, for a test that touches every run in it."""
    with throwaway_database() as url:
        database = make_engine(Settings(database_url=url))
        try:
            yield dataclasses.replace(ctx, sessions=make_sessionmaker(database))
        finally:
            database.dispose()


def test_releasing_every_lease_hands_each_unfinished_run_out_once_and_counts_held_ones_as_takeovers(own_ctx):
    ctx = own_ctx
    tenant, _key = create_key(ctx, "releasing")
    free, held = start_run(ctx, tenant), start_run(ctx, tenant)
    with ctx.uow() as uow:  # a process that died mid-turn: its lease is still live
        uow.session.execute(
            update(models.Run)
            .where(models.Run.id == held["id"])
            .values(status="in_progress", lease_owner="dead", lease_expires_at=ctx.clock.now() + 60)
        )
        uow.commit()
        before = dict(uow.session.execute(select(models.Run.id, models.Run.version)).all())
    run_ids, taken_over = lease.release_all(ctx)
    assert sorted(run_ids) == sorted([free["id"], held["id"]]) and taken_over == 1
    with ctx.uow() as uow:
        rows = {r.id: r for r in uow.session.scalars(select(models.Run))}
    assert [rows[held["id"]].takeovers, rows[free["id"]].takeovers] == [1, 0]
    assert all(r.lease_owner is None and r.version == before[r.id] + 1 for r in rows.values())
