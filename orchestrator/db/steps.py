"""The statements on a run's steps and assistant messages that the engine and the lifecycle make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from orchestrator.db import models, rows
from orchestrator.domain.errors import StaleRun
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
    progress but finds it ended once it has its lock (a submit and an expiry racing) raises StaleRun, so
    the step never gets two endings."""
    row = session.execute(
        rows.updating(models.RunStep)
        .where(models.RunStep.id == step_id, models.RunStep.status == StepStatus.IN_PROGRESS)
        .values(status=status, **values)
        .returning(*rows.columns(models.RunStep))
    ).one_or_none()
    if row is None:
        raise StaleRun(f"step {step_id} has already ended")
    return row


def update_step(session: Session, step_id: str, **values: Any) -> None:
    session.execute(update(models.RunStep).where(models.RunStep.id == step_id).values(**values))


def end_message(
    session: Session, message_id: str, status: MessageStatus, **values: Any
) -> models.Message | None:
    return session.execute(
        update(models.Message)
        .where(models.Message.id == message_id, models.Message.status == MessageStatus.IN_PROGRESS)
        .values(status=status, **values)
        .returning(models.Message)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).scalar_one_or_none()


def discard_turn(session: Session, run_id: str, turn: int, step_id: str) -> None:
    """A dead worker's step of another kind than its redo produces: it goes, with its message."""
    session.execute(
        delete(models.Message).where(models.Message.run_id == run_id, models.Message.turn == turn)
    )
    session.execute(delete(models.RunStep).where(models.RunStep.id == step_id))


def tool_steps(session: Session, run_id: str) -> list[models.RunStep]:
    """The run's completed tool_calls steps, oldest first (the tool rounds of its prompt)."""
    return list(
        session.scalars(
            select(models.RunStep)
            .where(
                models.RunStep.run_id == run_id,
                models.RunStep.type == StepType.TOOL_CALLS,
                models.RunStep.status == StepStatus.COMPLETED,
            )
            .order_by(models.RunStep.created_us)
        )
    )
