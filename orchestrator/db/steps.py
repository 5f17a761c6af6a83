"""The statements on a run's steps and assistant messages that the engine and the lifecycle make."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from orchestrator.db import models, rows
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.lifecycle import MessageStatus, StepStatus, StepType


@dataclass(frozen=True)
class OpenStep:
    """The step a run is writing, and its message for a message_creation step."""

    id: str
    kind: StepType
    message_id: str | None = None

    @classmethod
    def of(cls, row: models.RunStep) -> OpenStep:
        message = row.step_details.get("message_creation", {}).get("message_id")
        return cls(row.id, row.type, message)


def open_step(session: Session, run_id: str, turn: int | None = None) -> OpenStep | None:
    """The run's step in progress (of `turn`, when given), if any."""
    statement = select(models.RunStep).where(
        models.RunStep.run_id == run_id, models.RunStep.status == StepStatus.IN_PROGRESS
    )
    if turn is not None:
        statement = statement.where(models.RunStep.turn == turn)
    row = session.scalar(statement.order_by(models.RunStep.turn.desc()).limit(1))
    return OpenStep.of(row) if row is not None else None


def end_step(session: Session, step_id: str, status: StepStatus, **values: Any) -> models.RunStep:
    """The ended step, as a read-only row. Only a step in progress ends, once: a transaction that read it in
    progress but finds it ended once it has its lock (a submit and an expiry racing) raises StaleWrite, so
    the step never gets two endings."""
    statement = _ending(models.RunStep, status, StepStatus.IN_PROGRESS, tuple(sorted(values)))
    row = session.execute(statement, _params(step_id, values)).one_or_none()
    if row is None:
        raise StaleWrite(f"step {step_id} has already ended")
    return row


def update_step(session: Session, step_id: str, **values: Any) -> None:
    session.execute(_updating_step(tuple(sorted(values))), _params(step_id, values))


def end_message(
    session: Session, message_id: str, status: MessageStatus, **values: Any
) -> models.Message | None:
    """The ended message as a read-only row; None if it had already ended."""
    statement = _ending(models.Message, status, MessageStatus.IN_PROGRESS, tuple(sorted(values)))
    return session.execute(statement, _params(message_id, values)).one_or_none()


# Built once per shape, over the tables' columns, executed with bound parameters (see db/runs.py).


def _params(row_id: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"row_id": row_id, **rows.values(values)}


@functools.lru_cache(maxsize=128)
def _ending(model, status, in_progress, keys: tuple[str, ...]):
    c = model.__table__.c
    return (
        rows.updating(model)
        .where(c.id == bindparam("row_id"), c.status == in_progress)
        .values(status=status, **rows.bound(keys))
        .returning(*rows.columns(model))
    )


@functools.lru_cache(maxsize=32)
def _updating_step(keys: tuple[str, ...]):
    c = models.RunStep.__table__.c
    return rows.updating(models.RunStep).where(c.id == bindparam("row_id")).values(**rows.bound(keys))


def discard_turn(session: Session, run_id: str, turn: int, step_id: str) -> None:
    """A dead worker's step of another kind than its redo produces: it goes, with its message."""
    session.execute(
        delete(models.Message).where(models.Message.run_id == run_id, models.Message.turn == turn)
    )
    session.execute(delete(models.RunStep).where(models.RunStep.id == step_id))


def tool_steps(session: Session, run_id: str) -> list[models.RunStep]:
    """The run's ended tool_calls steps, oldest first (the tool rounds of its prompt): completed ones, and
    those of server-side calls that failed to run (the model reads that they did not)."""
    return list(
        session.scalars(
            select(models.RunStep)
            .where(
                models.RunStep.run_id == run_id,
                models.RunStep.type == StepType.TOOL_CALLS,
                models.RunStep.status.in_((StepStatus.COMPLETED, StepStatus.FAILED)),
            )
            .order_by(models.RunStep.created_us)
        )
    )
