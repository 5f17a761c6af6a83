"""How a run ends (completed, incomplete, failed, cancelled, expired) together with the step and message it
was writing. One function, used by workers, the API (cancel, lazy expiry) and the scheduler's sweeps."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.db.events import EventBatch
from orchestrator.db.transitions import transition
from orchestrator.domain.errors import LeaseLost
from orchestrator.domain.lifecycle import (
    MESSAGE_INCOMPLETE_REASON,
    STEP_END,
    STEP_STAMP,
    MessageStatus,
    RunStatus,
    StepStatus,
    StepType,
)
from orchestrator.services import wire
from orchestrator.services.context import Context
from orchestrator.services.recovery import streamed_content


def open_step(session: Session, run_id: str) -> models.RunStep | None:
    return session.scalar(
        select(models.RunStep)
        .where(models.RunStep.run_id == run_id, models.RunStep.status == StepStatus.IN_PROGRESS.value)
        .order_by(models.RunStep.turn.desc())
        .limit(1)
    )


def end_run(
    ctx: Context,
    session: Session,
    batch: EventBatch,
    run_id: str,
    target: RunStatus,
    *,
    owner: object | None,
    content: list[dict] | None = None,
    step_usage: dict | None = None,
    **run_values,
) -> models.Run:
    """End the open step and its message as `target` implies, then move the run; all or nothing.

    Raises LeaseLost when the run may not make this move (already ended, or fenced out)."""
    now = ctx.now()
    step = open_step(session, run_id)
    if step is not None:
        if content is None and step.type == StepType.MESSAGE_CREATION.value:
            content = streamed_content(ctx, run_id, step.step_details["message_creation"]["message_id"])
        _end_step(session, batch, step, target, now, content, step_usage, run_values.get("last_error"))
    run = transition(session, batch, run_id, target, now=now, owner=owner, release=True, **run_values)
    if run is None:
        raise LeaseLost(f"run {run_id} cannot move to {target}")
    return run


def _end_step(session, batch, step, target, now, content, usage, last_error) -> None:
    status = STEP_END[target]
    if step.type == StepType.MESSAGE_CREATION.value:
        _end_message(session, batch, step, target, now, content)
    step.status = status.value
    setattr(step, STEP_STAMP[status], now)
    if usage is not None:
        step.usage = usage
    if status is StepStatus.FAILED and last_error:
        step.last_error = {"code": _step_error_code(last_error["code"]), "message": last_error["message"]}
    session.flush()
    batch.add(f"thread.run.step.{status.value}", wire.step(step))


def _end_message(session, batch, step, target, now, content) -> None:
    message = session.get(models.Message, step.step_details["message_creation"]["message_id"])
    if message is None:
        return
    if content is not None:
        message.content = content
    if target is RunStatus.COMPLETED:
        message.status, message.completed_at = MessageStatus.COMPLETED.value, now
    else:
        message.status, message.incomplete_at = MessageStatus.INCOMPLETE.value, now
        message.incomplete_details = {"reason": MESSAGE_INCOMPLETE_REASON[target]}
    session.flush()
    batch.add(f"thread.message.{message.status}", wire.message(message))


def _step_error_code(code: str) -> str:
    # Steps know only these two codes (contract §3.5).
    return code if code in {"server_error", "rate_limit_exceeded"} else "server_error"
