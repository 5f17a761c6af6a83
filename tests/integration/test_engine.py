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
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.engine import advance as engine
from orchestrator.engine import sweeper
from orchestrator.providers.local import LocalModel
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, runs
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
    # Other tests' runs share this database: only this run's fate is checked.
    assert run["id"] not in _sweep_ids(ctx)  # too young to be called lost
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


def test_a_lease_that_cannot_be_renewed_for_a_whole_lease_is_given_up(ctx, tenant):
    class Unreachable:
        """A session factory for a database that stopped answering."""

        def __call__(self):
            raise ConnectionError("database unreachable")

    broken = type(ctx)(
        ctx.settings.model_copy(update={"lease_seconds": 0.6}), Unreachable(), ctx.queue, ctx.bus
    )
    signalled = threading.Event()
    with broken.leases.hold("run_x", "owner") as hold:
        hold.on_signal = signalled.set
        assert signalled.wait(5)
    assert hold.lost.is_set() and not hold.cancelled.is_set()


def held_runs(ctx, tenant, count):
    """`count` runs in progress, each leased by a turn of this process as the engine leaves them."""
    run_ids = [start_run(ctx, tenant)["id"] for _ in range(count)]
    with ctx.uow() as uow:
        for run_id in run_ids:
            uow.session.execute(
                update(models.Run)
                .where(models.Run.id == run_id)
                .values(
                    status="in_progress", lease_owner=f"me:{run_id}", lease_expires_at=ctx.clock.now() + 2
                )
            )
        uow.commit()
    return run_ids


def test_one_statement_per_interval_renews_every_lease_a_process_holds(ctx, tenant, engine):
    from sqlalchemy import event

    run_ids = held_runs(ctx, tenant, 40)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if "runs" in statement and ("UPDATE" in statement or "SELECT runs.id, runs.status" in statement):
            statements.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", seen)
    keeper = ctx.leases
    holds = [keeper.hold(run_id, f"me:{run_id}") for run_id in run_ids]
    try:
        for hold in holds:
            hold.__enter__()
        time.sleep(keeper.renew_every + 3 * keeper.CHECK_SECONDS)
    finally:
        for hold in holds:
            hold.__exit__(None, None, None)
        event.remove(engine, "before_cursor_execute", seen)
    with ctx.uow() as uow:
        expiries = uow.session.scalars(select(models.Run.lease_expires_at).where(models.Run.id.in_(run_ids)))
        assert min(expiries) > ctx.clock.now() + ctx.settings.lease_seconds - keeper.renew_every - 1.5
    # Every half second one statement for all 40 runs: reads, and one renewal per renew_every.
    assert 1 <= statements.count("UPDATE") <= 3 and statements.count("SELECT") >= 2
    assert len(statements) <= (keeper.renew_every + 3 * keeper.CHECK_SECONDS) / keeper.CHECK_SECONDS + 1
    assert not any(hold.lost.is_set() or hold.cancelled.is_set() for hold in holds)


def test_the_keeper_tells_a_cancelled_turn_within_a_second_and_a_displaced_one_that_it_lost(ctx, tenant):
    cancelled, displaced, untouched = held_runs(ctx, tenant, 3)
    keeper = ctx.leases
    woken = {run_id: threading.Event() for run_id in (cancelled, displaced, untouched)}
    holds = {run_id: keeper.hold(run_id, f"me:{run_id}") for run_id in woken}
    for run_id, hold in holds.items():
        hold.on_signal = woken[run_id].set
        hold.__enter__()
    try:
        with ctx.uow() as uow:
            uow.session.execute(
                update(models.Run).where(models.Run.id == cancelled).values(status="cancelling")
            )
            uow.session.execute(
                update(models.Run).where(models.Run.id == displaced).values(lease_owner="other")
            )
            uow.commit()
        started = time.monotonic()
        assert woken[cancelled].wait(1) and woken[displaced].wait(1)
        assert time.monotonic() - started < 1
        assert not woken[untouched].wait(0.6)
    finally:
        for hold in holds.values():
            hold.__exit__(None, None, None)
    assert holds[cancelled].cancelled.is_set() and not holds[cancelled].lost.is_set()
    assert holds[displaced].lost.is_set()
    assert not (holds[untouched].lost.is_set() or holds[untouched].cancelled.is_set())


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
    run_ids, taken_over = sweeper.release_all(ctx)
    assert sorted(run_ids) == sorted([free["id"], held["id"]]) and taken_over == 1
    with ctx.uow() as uow:
        rows = {r.id: r for r in uow.session.scalars(select(models.Run))}
    assert [rows[held["id"]].takeovers, rows[free["id"]].takeovers] == [1, 0]
    assert all(r.lease_owner is None and r.version == before[r.id] + 1 for r in rows.values())


def test_a_nudged_keeper_reads_the_run_at_once_instead_of_at_its_next_check(ctx, tenant):
    keeper = ctx.leases
    owner = keeper.new_owner()
    (run_id,) = held_runs(ctx, tenant, 1)
    with ctx.uow() as uow:
        uow.session.execute(update(models.Run).where(models.Run.id == run_id).values(lease_owner=owner))
        uow.commit()
    woken = threading.Event()
    with keeper.hold(run_id, owner) as hold:
        hold.on_signal = woken.set
        time.sleep(keeper.CHECK_SECONDS * 1.2)  # just after a check: the next is almost half a second away
        with ctx.uow() as uow:
            uow.session.execute(update(models.Run).where(models.Run.id == run_id).values(status="cancelling"))
            uow.commit()
        started = time.monotonic()
        ctx.signals.notify(owner, run_id)
        assert woken.wait(1)
        assert time.monotonic() - started < keeper.CHECK_SECONDS * 0.6
    assert hold.cancelled.is_set()


def test_a_step_that_already_ended_cannot_end_again(ctx, tenant):
    """An expiry that read the tool step in progress before a submit completed it (the two race) must not
    give the step a second ending: the guarded end raises and the expiry's transaction changes nothing."""
    from orchestrator.db import steps
    from orchestrator.db.runs import ANYONE
    from orchestrator.domain.errors import StaleWrite
    from orchestrator.domain.lifecycle import RunStatus
    from orchestrator.engine import lifecycle
    from orchestrator.schemas.runs import SubmitToolOutputs

    tool = {"type": "function", "function": {"name": "lookup"}}
    run = start_run(ctx, tenant, "lookup now", tools=[tool])
    engine.advance(ctx, run["id"])
    with ctx.uow() as uow:
        seen_open = steps.open_step(uow.session, run["id"])  # what the expiry read
        call_id = uow.session.get(models.Run, run["id"]).required_action["submit_tool_outputs"]["tool_calls"][
            0
        ]["id"]
    body = SubmitToolOutputs(tool_outputs=[{"tool_call_id": call_id, "output": "42"}])
    runs.submit_tool_outputs(ctx, tenant, run["thread_id"], run["id"], body)
    with ctx.uow() as uow, pytest.raises(StaleWrite):
        lifecycle.end(ctx, uow, run["id"], RunStatus.EXPIRED, ANYONE, step=seen_open)
    with ctx.uow() as uow:
        step = uow.session.get(models.RunStep, seen_open.id)
        endings = uow.session.scalar(
            select(func.count())
            .select_from(models.RunEvent)
            .where(models.RunEvent.run_id == run["id"], models.RunEvent.event.like("thread.run.step.%"))
            .where(models.RunEvent.event.not_in(["thread.run.step.created", "thread.run.step.in_progress"]))
        )
    assert step.status == "completed" and endings == 1
