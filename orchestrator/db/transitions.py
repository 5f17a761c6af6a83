"""Guarded, versioned run transitions: the database applies the lifecycle's table.

`UPDATE runs SET status = :target … WHERE id = :id AND status = ANY(:allowed) [AND lease_owner = :owner]
RETURNING *` — zero rows means the run was not in a state that allows the move (or the caller no longer
owns it), and nothing changes. Every successful transition appends its `thread.run.<status>` event to the
caller's batch in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.db.events import EventBatch
from orchestrator.domain.lifecycle import RunStatus, sources_of, stamps
from orchestrator.services import wire

UNLEASED = object()


def transition(
    session: Session,
    batch: EventBatch,
    run_id: str,
    target: RunStatus,
    *,
    now: int,
    owner: str | object | None = None,
    sources: Iterable[RunStatus] | None = None,
    release: bool = False,
    **values,
) -> models.Run | None:
    """Move the run to `target` if its status allows it. `owner` fences the write to the lease holder
    (UNLEASED: only when nobody holds a live lease); `release` clears the lease in the same update."""
    allowed = frozenset(sources) if sources is not None else sources_of(target)
    statement = (
        update(models.Run)
        .where(models.Run.id == run_id, models.Run.status.in_([s.value for s in allowed]))
        .values(status=target.value, version=models.Run.version + 1, **stamps(target, now), **values)
        .returning(models.Run)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if owner is UNLEASED:
        statement = statement.where(
            (models.Run.lease_owner.is_(None)) | (models.Run.lease_expires_at < float(now))
        )
    elif owner is not None:
        statement = statement.where(models.Run.lease_owner == owner)
    if release:
        statement = statement.values(lease_owner=None, lease_expires_at=None)
    row = session.execute(statement).scalar_one_or_none()
    if row is not None:
        batch.add(target.event, wire.run(row))
    return row


def current_status(session: Session, run_id: str) -> RunStatus | None:
    value = session.scalar(select(models.Run.status).where(models.Run.id == run_id))
    return RunStatus(value) if value else None
