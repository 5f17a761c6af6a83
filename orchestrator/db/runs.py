"""The run store: every statement that reads or writes `runs` for the API's use cases, the engine and the
sweeps. The lifecycle table (domain/lifecycle.py) decides which moves exist; this module applies them.

Every write is guarded: `UPDATE runs … WHERE id = :id AND status = ANY(:allowed) AND <writer> RETURNING *`.
A guarded write that matches no row raises StaleRun, the one error for "the run moved on without you".
Who may write is a `Writer`: the lease holder, anyone while nobody holds a live lease, or anyone at all
(expiry overrides a holder, whose next fenced write then fails).

Statements that move a run also number the events of the unit of work (`events`): see db/events.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select, text, true, update
from sqlalchemy.orm import Session

from orchestrator.db import models, rows
from orchestrator.db.events import DELTA_BLOCK, counters
from orchestrator.domain.errors import StaleRun, not_found
from orchestrator.domain.lifecycle import (
    ACTIVE,
    EXPIRABLE,
    WORKABLE,
    RunStatus,
    sources_of,
    stamps,
)

Run = models.Run
# In parentheses: the conditions are ANDed with others (OR binds looser than AND).
HANDED_OUT_SQL, WAITING_SQL, WORKING_SQL = (
    f"({c})" for c in (models.HANDED_OUT_SQL, models.WAITING_SQL, models.WORKING_SQL)
)


@dataclass(frozen=True)
class Writer:
    """Who may write a run: `holder(owner)`, `UNLEASED` (nobody holds a live lease) or `ANYONE`."""

    owner: str | None = None
    unleased: bool = False

    @classmethod
    def holder(cls, owner: str) -> Writer:
        return cls(owner=owner)

    def guard(self, now: float) -> ColumnElement[bool]:
        if self.owner is not None:
            return Run.lease_owner == self.owner
        if self.unleased:
            return Run.lease_owner.is_(None) | (Run.lease_expires_at < now)
        return true()


UNLEASED = Writer(unleased=True)
ANYONE = Writer()


def _in(statuses: Iterable[RunStatus]) -> ColumnElement[bool]:
    return Run.status.in_(sorted(statuses))


def _returning_one(session: Session, statement) -> Run | None:
    """The row a guarded write returned, read-only (Core: several times cheaper than ORM objects)."""
    return session.execute(statement.returning(*rows.columns(Run))).one_or_none()


# --- moves -----------------------------------------------------------------------------------------------


def move(
    session: Session,
    run_id: str,
    target: RunStatus,
    writer: Writer,
    *,
    now: float,
    events: int = 0,
    release: bool = False,
    **values: Any,
) -> Run:
    """Move the run to `target` if its status allows it and `writer` may; `events` of the unit of work
    are numbered by the same statement; `release` clears the lease with it."""
    statement = (
        rows.updating(Run)
        .where(Run.id == run_id, _in(sources_of(target)), writer.guard(now))
        .values(status=target, version=Run.version + 1, **stamps(target, int(now)), **values)
    )
    if events:
        statement = statement.values(**counters(events))
    if release:
        statement = statement.values(lease_owner=None, lease_expires_at=None)
    row = _returning_one(session, statement)
    if row is None:
        raise StaleRun(f"run {run_id} cannot move to {target}")
    return row


def fence(
    session: Session, run_id: str, owner: str, *, events: int = 0, reserve_deltas: bool = False, **values
) -> Run:
    """Write a run in progress as its lease holder (the turn's own fields), numbering `events`."""
    statement = rows.updating(Run).where(
        Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.IN_PROGRESS
    )
    statement = statement.values(**values)
    if events or reserve_deltas:
        statement = statement.values(**counters(events, reserve_deltas=reserve_deltas))
    row = _returning_one(session, statement)
    if row is None:
        raise StaleRun(f"run {run_id} is no longer this worker's to write")
    return row


def reserve_deltas(session: Session, run_id: str, owner: str) -> tuple[int, int]:
    """Another block of delta numbers for the holder: (the number before the block, its `prev`)."""
    row = session.execute(
        rows.updating(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.IN_PROGRESS)
        .values(event_seq=Run.event_seq + DELTA_BLOCK)
        .returning(Run.event_seq, Run.lifecycle_seq)
    ).one_or_none()
    if row is None:
        raise StaleRun(f"run {run_id} is no longer this worker's to write")
    return row.event_seq - DELTA_BLOCK, row.lifecycle_seq


# --- leases ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    run: Run
    started: bool  # it was queued and this claim moved it to in_progress (one event to number)
    taken_over: bool  # the previous holder's lease had lapsed


def claim(session: Session, run_id: str, owner: str, *, now: float, lease_seconds: float) -> Claim | None:
    """Take the run's lease if it is free, or else if it lapsed, and start it if it is queued and not
    overdue: one statement, usually. Two guarded updates rather than one, because only the second kind
    is a takeover and RETURNING sees only the new row."""
    for lapsed in (False, True):
        condition = Run.lease_expires_at < now if lapsed else Run.lease_owner.is_(None)
        row = _returning_one(session, _claiming(run_id, owner, now, lease_seconds, condition, lapsed))
        if row is not None:
            return Claim(row, started=row.lifecycle_seq > row.lifecycle_prev, taken_over=lapsed)
    return None


def _claiming(run_id: str, owner: str, now: float, lease_seconds: float, condition, lapsed: bool):
    starting = (Run.status == RunStatus.QUEUED) & ((Run.expires_at.is_(None)) | (Run.expires_at > now))
    return (
        rows.updating(Run)
        .where(Run.id == run_id, _in(WORKABLE), condition)
        .values(
            lease_owner=owner,
            lease_expires_at=now + lease_seconds,
            version=Run.version + 1,
            takeovers=Run.takeovers + int(lapsed),
            status=case((starting, RunStatus.IN_PROGRESS.value), else_=Run.status),
            started_at=case((starting, int(now)), else_=Run.started_at),
            # Starting numbers one event (thread.run.in_progress); a takeover numbers none, and then
            # lifecycle_seq == lifecycle_prev tells the caller so.
            lifecycle_prev=Run.lifecycle_seq,
            lifecycle_seq=case((starting, Run.event_seq + 1), else_=Run.lifecycle_seq),
            event_seq=case((starting, Run.event_seq + 1), else_=Run.event_seq),
        )
    )


def release(session: Session, run_id: str, owner: str) -> None:
    session.execute(
        rows.updating(Run)
        .where(Run.id == run_id, Run.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


def release_all(session: Session, now: float) -> tuple[list[str], int]:
    """Clear the lease of every unfinished run and mark it enqueued now; the ids, and how many leases were
    held (taken over). Free ones first: once cleared, the held ones would match "free" too."""
    free = list(session.scalars(_clearing(now, Run.lease_owner.is_(None), taken_over=False)))
    taken = list(session.scalars(_clearing(now, Run.lease_owner.is_not(None), taken_over=True)))
    return taken + free, len(taken)


def _clearing(now: float, held, *, taken_over: bool):
    return (
        update(Run)
        .where(_in(WORKABLE), held)
        .values(
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=now,
            version=Run.version + 1,
            takeovers=Run.takeovers + int(taken_over),
        )
        .returning(Run.id)
    )


def renew(session: Session, held: list[tuple[str, str]], until: float) -> dict[str, RunStatus]:
    """Extend the leases of (run id, owner) pairs in one statement; the status of each still owned."""
    renewed = session.execute(
        rows.updating(Run).where(*_pairs(held)).values(lease_expires_at=until).returning(Run.id, Run.status)
    )
    return dict(renewed.all())


def statuses(session: Session, held: list[tuple[str, str]]) -> dict[str, RunStatus]:
    """The status of each (run id, owner) pair the owner still holds, in one read."""
    return dict(session.execute(select(Run.id, Run.status).where(*_pairs(held))).all())


def _pairs(held: list[tuple[str, str]]) -> tuple:
    # Owner tokens are unique per turn, so matching both lists matches the pairs; the ids use the key.
    return Run.id.in_([run_id for run_id, _owner in held]), Run.lease_owner.in_(
        [owner for _id, owner in held]
    )


def holder_status(session: Session, run_id: str, owner: str) -> RunStatus | None:
    return session.scalar(select(Run.status).where(Run.id == run_id, Run.lease_owner == owner))


# --- sweeps ------------------------------------------------------------------------------------------


def overdue(session: Session, now: float, limit: int = 500) -> list[str]:
    return list(session.scalars(select(Run.id).where(_in(EXPIRABLE), Run.expires_at <= now).limit(limit)))


def requeue_orphans(session: Session, now: float, stale: float, limit: int = 500) -> list[str]:
    """Mark enqueued now, and return, runs nobody works on: in progress or cancelling without a live lease
    (the worker died), or queued and not claimed for a while (the queue message was lost)."""
    unleased = Run.lease_owner.is_(None) | (Run.lease_expires_at < now)
    orphaned = (Run.status != RunStatus.QUEUED) | (Run.enqueued_at < stale)
    recent = Run.enqueued_at.is_(None) | (Run.enqueued_at < now - 1.0)
    chosen = (
        select(Run.id)
        .where(_in(WORKABLE), unleased, orphaned, recent)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        session.scalars(update(Run).where(Run.id.in_(chosen)).values(enqueued_at=now).returning(Run.id))
    )


# --- handing runs out, per tenant (services/dispatch.py) ---------------------------------------------
# Literal predicates, the partial indexes' own: Postgres uses a partial index only for a query it can prove
# implies the index's condition, which bound parameters would hide.


def handed_out(session: Session, tenant_id: str) -> int:
    """The tenant's runs handed to workers: in the broker, or being advanced."""
    return session.scalar(
        select(func.count()).select_from(Run).where(Run.tenant_id == tenant_id, text(HANDED_OUT_SQL))
    )


def working(session: Session, tenant_id: str) -> int:
    """The tenant's runs being advanced now (in progress or cancelling)."""
    return session.scalar(
        select(func.count()).select_from(Run).where(Run.tenant_id == tenant_id, text(WORKING_SQL))
    )


def hand_out(session: Session, tenant_id: str, count: int, now: float) -> list[str]:
    """Mark the tenant's `count` oldest waiting runs enqueued now, and return them (the caller enqueues)."""
    oldest = (
        select(Run.id)
        .where(Run.tenant_id == tenant_id, text(WAITING_SQL))
        .order_by(Run.created_us)
        .limit(count)
        .with_for_update(skip_locked=True)
    )
    return list(
        session.scalars(update(Run).where(Run.id.in_(oldest)).values(enqueued_at=now).returning(Run.id))
    )


def tenants_waiting(session: Session, limit: int = 500) -> list[str]:
    """Tenants with runs waiting to be handed out."""
    return list(session.scalars(select(Run.tenant_id).where(text(WAITING_SQL)).distinct().limit(limit)))


def park(session: Session, run_id: str) -> None:
    """Put a queued run back among the waiting (not handed out), as nobody holds it."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED, Run.lease_owner.is_(None))
        .values(enqueued_at=None)
    )


# --- reads -------------------------------------------------------------------------------------------


def get(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def load(session: Session, tenant_id: str, thread_id: str, run_id: str, *, for_update: bool = False) -> Run:
    """The tenant's run on that thread, or 404."""
    statement = select(Run).where(Run.id == run_id, Run.thread_id == thread_id, Run.tenant_id == tenant_id)
    run = session.scalar(statement.with_for_update() if for_update else statement)
    if run is None:
        raise not_found("run", run_id)
    return run


def active_run_id(session: Session, thread_id: str) -> str | None:
    """The id of the thread's queued / in_progress / requires_action / cancelling run, if any."""
    return session.scalar(select(Run.id).where(Run.thread_id == thread_id, _in(ACTIVE)).limit(1))


def count_by_status(session: Session) -> dict[RunStatus, int]:
    return dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())


def scope(tenant_id: str, thread_id: str) -> list[ColumnElement[bool]]:
    """A thread's runs, for pagination."""
    return [Run.thread_id == thread_id, Run.tenant_id == tenant_id]


def set_metadata(run: Run, metadata: dict) -> None:
    run.metadata_ = metadata
    run.version += 1
