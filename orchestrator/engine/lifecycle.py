"""The run lifecycle as a service, shared by the API, the engine and the sweeps: move a run and record its
event, end it together with the step and message it was writing, expire it, finish a cancel.

    move ──▶ runs.move (guarded UPDATE, numbering the unit of work's events) ──▶ thread.run.<status>
    end  ──▶ step and message ended as the target implies ──▶ move (release the lease)

Nothing here commits: callers own their unit of work.
"""

from __future__ import annotations

from typing import Any

from orchestrator.context import Context
from orchestrator.db import models, runs, steps
from orchestrator.db.runs import ANYONE, Writer
from orchestrator.db.steps import OpenStep
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import (
    EXPIRABLE,
    MESSAGE_INCOMPLETE_REASON,
    STEP_END,
    STEP_STAMP,
    Api,
    MessageStatus,
    RunStatus,
    StepEvent,
    StepStatus,
    StepType,
)
from orchestrator.engine import dispatch, wire
from orchestrator.engine.recovery import streamed_content
from orchestrator.engine.responses import output


def move(
    uow: UnitOfWork, run_id: str, target: RunStatus, writer: Writer, now: float, **values: Any
) -> models.Run:
    """Move the run and record its event; the statement numbers every event of the run this unit of work
    recorded so far, and that one. Raises StaleWrite when the run may not make this move."""
    count = uow.events.pending(run_id) + 1
    row = runs.move(uow.session, run_id, target, writer, now=now, events=count, **values)
    uow.events.numbered(run_id, row.tenant_id, row, count)
    uow.events.record(run_id, row.tenant_id, *event_of(uow.session, row, target, int(now)))
    return row


def new_run(ctx: Context, tenant_id: str, api: Api, **fields: Any) -> models.Run:
    """A run any face creates: `fields` are the face's (its ids, the model and its settings); the engine's
    own (queued, the fencing version, the event counters, no turn yet, when it expires) are set here."""
    now = ctx.timestamp()
    return models.Run(
        id=new_id("resp" if api is Api.RESPONSES else "run"),
        tenant_id=tenant_id,
        api=api,
        created_at=now,
        created_us=monotonic_us(),
        status=RunStatus.QUEUED,
        version=1,
        event_seq=0,
        lifecycle_seq=0,
        turn=0,
        takeovers=0,
        expires_at=now + ctx.settings.run_expires_seconds,
        **fields,
    )


def event_of(session, row, target: RunStatus, now: int, *, produced: list | None = None) -> tuple[str, dict]:
    """The event a move emits, in its face's terms: thread.run.<status> with the run, or a Response's
    (`produced`: its output items, when the caller knows them: none, for a run that just started)."""
    if row.api is Api.RESPONSES:
        return output.moved(session, row, target, now, produced)
    return target.event, wire.run(row)


def end(
    ctx: Context,
    uow: UnitOfWork,
    run_id: str,
    target: RunStatus,
    writer: Writer,
    *,
    step: OpenStep | None = None,
    content: list[dict] | None = None,
    step_usage: dict | None = None,
    api: Api | None = None,
    output_settled: bool = False,
    **values: Any,
) -> models.Run:
    """End the open step (the one given, else the one in the database) and its message as `target`
    implies (a Response's open output items, unless the caller settled them: `output_settled`), then move
    the run and release its lease; all or nothing. Raises StaleWrite. `api`: the run's face, when the
    caller knows it (else it is read)."""
    now = ctx.clock.now()
    if (api or runs.api_of(uow.session, run_id)) is Api.RESPONSES:
        if not output_settled:
            output.close_open(uow, run_id, target)
        return leave(ctx, uow, move(uow, run_id, target, writer, now, release=True, **values))
    step = step or steps.open_step(uow.session, run_id)
    if step is not None:
        if content is None and step.kind is StepType.MESSAGE_CREATION:
            content = streamed_content(ctx, run_id, step.message_id)
        _end_step(uow, run_id, step, target, int(now), content, step_usage, values.get("last_error"))
    return leave(ctx, uow, move(uow, run_id, target, writer, now, release=True, **values))


def leave(ctx: Context, uow: UnitOfWork, run: models.Run) -> models.Run:
    """The run stopped being worked on (it ended or waits for tool outputs), `run` as its releasing move
    returned it: if it held a place in its tenant's window (it was handed out) and the tenant has runs
    waiting, the place goes to the oldest. (One that starts waiting just now is handed out by the sweep.)"""
    if run.enqueued_at is not None and run.tenant_waiting:
        dispatch.after_leg(ctx, uow, run.tenant_id)
    return run


def _end_step(uow, run_id, step: OpenStep, target, now, content, usage, last_error) -> None:
    status = STEP_END[target]
    if step.message_id is not None:
        _end_message(uow, run_id, step.message_id, target, now, content)
    values: dict[str, Any] = {STEP_STAMP[status]: now}
    if usage is not None:
        values["usage"] = usage
    if status is StepStatus.FAILED and last_error:
        values["last_error"] = {
            "code": _step_error_code(last_error["code"]),
            "message": last_error["message"],
        }
    row = steps.end_step(uow.session, step.id, status, **values)
    uow.events.record(run_id, row.tenant_id, StepEvent.of_step(status), wire.step(row))


def _end_message(uow, run_id, message_id, target, now, content) -> None:
    values: dict[str, Any] = {} if content is None else {"content": content}
    if target is RunStatus.COMPLETED:
        status, values["completed_at"] = MessageStatus.COMPLETED, now
    else:
        status, values["incomplete_at"] = MessageStatus.INCOMPLETE, now
        values["incomplete_details"] = {"reason": MESSAGE_INCOMPLETE_REASON[target]}
    row = steps.end_message(uow.session, message_id, status, **values)
    if row is not None:
        uow.events.record(run_id, row.tenant_id, StepEvent.of_message(status), wire.message(row))


def _step_error_code(code: str) -> str:
    # Steps know only these two codes (contract §3.5).
    return code if code in {"server_error", "rate_limit_exceeded"} else "server_error"


# --- expiry and cancels --------------------------------------------------------------------------------


def is_overdue(ctx: Context, run: models.Run) -> bool:
    return run.status in EXPIRABLE and run.expires_at is not None and run.expires_at <= ctx.clock.now()


def expire(ctx: Context, run_id: str) -> bool:
    """End an overdue run as expired; any holder's lease is overridden (its fenced writes then fail), and
    the holder is nudged to stop now. False when the run is not overdue (any more)."""
    with ctx.uow() as uow:
        # No lock on the run first: `end` takes its locks in the order a finishing worker does (message,
        # step, then the run's guarded move), so the two can race without deadlocking.
        run = runs.get(uow.session, run_id)
        if run is None or not is_overdue(ctx, run):
            return False
        nudge_holder(ctx, uow, run)
        try:
            end(ctx, uow, run_id, RunStatus.EXPIRED, ANYONE)
        except StaleWrite:
            return False
        uow.commit()
        return True


def finish_cancel(ctx: Context, run_id: str, writer: Writer) -> bool:
    """End a cancelling run as cancelled if `writer` may; False when it may not (a worker holds it)."""
    with ctx.uow() as uow:
        try:
            end(ctx, uow, run_id, RunStatus.CANCELLED, writer)
        except StaleWrite:
            return False
        uow.commit()
        return True


def nudge_holder(ctx: Context, uow: UnitOfWork, run: models.Run) -> None:
    """After commit, tell the worker holding the run's lease, if any, to look at the run now."""
    owner, run_id = run.lease_owner, run.id
    if owner is not None:
        uow.after_commit(lambda: ctx.signals.notify(owner, run_id))
