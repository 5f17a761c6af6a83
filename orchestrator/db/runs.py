"""The run store: every statement that reads or writes `runs` for the API's use cases, the engine and the
sweeps. The lifecycle table (domain/lifecycle.py) decides which moves exist; this module applies them.

Every write is guarded: `UPDATE runs … WHERE id = :id AND status = ANY(:allowed) AND <writer> RETURNING *`.
A guarded write that matches no row raises StaleWrite, the one error for "the run moved on without you".
Who may write is a `Writer`: the lease holder, anyone while nobody holds a live lease, or anyone at all
(expiry overrides a holder, whose next fenced write then fails).

Renewing the leases a process holds, reading their statuses and giving one back are db/leases.py's,
shared with every leased table (`LEASES`).

Statements that move a run also number the events of the unit of work (`events`): see db/events.py.

The statements of a run's hot path are built once per shape and executed with bound parameters, over the
table's columns (`C`): building an UPDATE … RETURNING and computing its cache key cost more CPU than
executing it, and an expression over the ORM's attributes sends even a Core statement through the ORM's
bulk-update machinery.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, exists, func, insert, select, text, true, update
from sqlalchemy.orm import Session

from orchestrator.db import leases, models, rows
from orchestrator.db.connection import on_postgres
from orchestrator.db.events import DELTA_BLOCK, EventLog, counters, unnesting, unnesting_params
from orchestrator.domain.errors import StaleWrite, not_found
from orchestrator.domain.lifecycle import (
    ACTIVE,
    EXPIRABLE,
    WORKABLE,
    Api,
    RunStatus,
    sources_of,
    stamps,
)

Run = models.Run
C = Run.__table__.c
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

    @property
    def kind(self) -> str:
        return "holder" if self.owner is not None else "unleased" if self.unleased else "anyone"


def _guard(kind: str) -> ColumnElement[bool]:
    """A writer's condition, over the parameters `owner` and `now`."""
    if kind == "holder":
        return C.lease_owner == bindparam("owner")
    if kind == "unleased":
        return C.lease_owner.is_(None) | (C.lease_expires_at < bindparam("now"))
    return true()


UNLEASED = Writer(unleased=True)
ANYONE = Writer()


def _in(statuses: Iterable[RunStatus]) -> ColumnElement[bool]:
    return C.status.in_(sorted(statuses))


def _returning_one(session: Session, statement, params: dict[str, Any]) -> Run | None:
    """The row a guarded write returned, read-only (Core: several times cheaper than ORM objects)."""
    return session.execute(statement, params).one_or_none()


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
    values = {**stamps(target, int(now)), **values}
    statement = _moving(target, writer.kind, events, release, tuple(sorted(values)))
    params = {"run_id": run_id, "owner": writer.owner, "now": now, **rows.values(values)}
    row = _returning_one(session, statement, params)
    if row is None:
        raise StaleWrite(f"run {run_id} cannot move to {target}")
    return row


@functools.lru_cache(maxsize=512)
def _moving(target: RunStatus, writer: str, events: int, release: bool, keys: tuple[str, ...]):
    statement = (
        rows.updating(Run)
        .where(C.id == bindparam("run_id"), _in(sources_of(target)), _guard(writer))
        .values(status=target, version=C.version + 1, **rows.bound(keys))
    )
    if events:
        statement = statement.values(**counters(events))
    if release:
        statement = statement.values(lease_owner=None, lease_expires_at=None)
        return statement.returning(*rows.columns(Run), _tenant_waiting())
    return statement.returning(*rows.columns(Run))


def _tenant_waiting():
    """`tenant_waiting` of a releasing move's row: whether the run's tenant has runs waiting for a place.
    The leg's end hands one out only then (services/dispatch.py), so in the common case, nothing waiting,
    it costs no statement of its own. The condition is the waiting index's own text, unqualified: inside
    the subquery its names are the alias's, and the planner matches it to that partial index."""
    waiting = Run.__table__.alias("waiting")
    return exists().where(waiting.c.tenant_id == C.tenant_id, text(WAITING_SQL)).label("tenant_waiting")


def fence(
    session: Session, run_id: str, owner: str, *, events: int = 0, reserve_deltas: bool = False, **values
) -> Run:
    """Write a run in progress as its lease holder (the turn's own fields), numbering `events`. Returns
    the row's event counters only (`event_seq`, `lifecycle_seq`, `lifecycle_prev`): every column costs the
    driver an object per result, and a turn fences often."""
    statement = _fencing(events, reserve_deltas, tuple(sorted(values)))
    row = _returning_one(session, statement, {"run_id": run_id, "owner": owner, **rows.values(values)})
    if row is None:
        raise StaleWrite(f"run {run_id} is no longer this worker's to write")
    return row


def _held():
    return (
        C.id == bindparam("run_id"),
        C.lease_owner == bindparam("owner"),
        C.status == RunStatus.IN_PROGRESS,
    )


@functools.lru_cache(maxsize=128)
def _fencing(events: int, reserve_deltas: bool, keys: tuple[str, ...]):
    statement = rows.updating(Run).where(*_held()).values(**rows.bound(keys))
    if events or reserve_deltas:
        statement = statement.values(**counters(events, reserve_deltas=reserve_deltas))
    return statement.returning(C.event_seq, C.lifecycle_seq, C.lifecycle_prev)


def reserve_deltas(session: Session, run_id: str, owner: str) -> tuple[int, int]:
    """Another block of delta numbers for the holder: (the number before the block, its `prev`)."""
    row = session.execute(_reserving(), {"run_id": run_id, "owner": owner}).one_or_none()
    if row is None:
        raise StaleWrite(f"run {run_id} is no longer this worker's to write")
    return row.event_seq - DELTA_BLOCK, row.lifecycle_seq


@functools.cache
def _reserving():
    return (
        rows.updating(Run)
        .where(*_held())
        .values(event_seq=C.event_seq + DELTA_BLOCK)
        .returning(C.event_seq, C.lifecycle_seq)
    )


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
    params = {"run_id": run_id, "owner": owner, "now": now, "second": int(now), "until": now + lease_seconds}
    for lapsed in (False, True):
        row = _returning_one(session, _claiming(lapsed), params)
        if row is not None:
            return Claim(row, started=row.lifecycle_seq > row.lifecycle_prev, taken_over=lapsed)
    return None


@functools.lru_cache(maxsize=2)
def _claiming(lapsed: bool):
    now = bindparam("now")
    condition = C.lease_expires_at < now if lapsed else C.lease_owner.is_(None)
    starting = (C.status == RunStatus.QUEUED) & ((C.expires_at.is_(None)) | (C.expires_at > now))
    return (
        rows.updating(Run)
        .where(C.id == bindparam("run_id"), _in(WORKABLE), condition)
        .values(
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("until"),
            version=C.version + 1,
            takeovers=C.takeovers + int(lapsed),
            status=case((starting, RunStatus.IN_PROGRESS.value), else_=C.status),
            started_at=case((starting, bindparam("second")), else_=C.started_at),
            # Starting numbers one event (thread.run.in_progress); a takeover numbers none, and then
            # lifecycle_seq == lifecycle_prev tells the caller so.
            lifecycle_prev=C.lifecycle_seq,
            lifecycle_seq=case((starting, C.event_seq + 1), else_=C.lifecycle_seq),
            event_seq=case((starting, C.event_seq + 1), else_=C.event_seq),
        )
        .returning(*rows.columns(Run))
    )


# What the process's LeaseKeeper renews, and what a run's status tells the turn holding it (db/leases.py).
LEASES = leases.Kind(
    "run",
    Run.__table__,
    carry_on=frozenset({RunStatus.IN_PROGRESS}),
    cancelled=frozenset({RunStatus.CANCELLING}),
)


def release(session: Session, run_id: str, owner: str) -> None:
    LEASES.release(session, run_id, owner)


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


def api_of(session: Session, run_id: str) -> Api | None:
    """The face a run belongs to (None: no such run)."""
    return session.scalar(select(C.api).where(C.id == run_id))


def holder_status(session: Session, run_id: str, owner: str) -> RunStatus | None:
    return session.scalar(select(C.status).where(C.id == run_id, C.lease_owner == owner))


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
    return session.scalar(_counting(HANDED_OUT_SQL), {"tenant_id": tenant_id})


def working(session: Session, tenant_id: str) -> int:
    """The tenant's runs being advanced now (in progress or cancelling)."""
    return session.scalar(_counting(WORKING_SQL), {"tenant_id": tenant_id})


@functools.lru_cache(maxsize=4)
def _counting(condition: str):
    return (
        select(func.count())
        .select_from(Run.__table__)
        .where(C.tenant_id == bindparam("tenant_id"), text(condition))
    )


def insert_new(
    session: Session, run: Run, *, window: int, now: float, before: tuple = (), log: EventLog | None = None
) -> bool:
    """INSERT a new run, handed out (enqueued now) when its tenant has fewer than `window` runs handed
    out, else waiting: one statement, which counts them, inserts the rows `before` it (its thread and
    messages: rows.add) and, from `log`, its first events, where it can (Postgres). Sets
    `run.enqueued_at`; True when handed out."""
    values = rows.with_defaults(Run, rows.row(run))
    values.pop("enqueued_at", None)
    params = rows.values(values) | {"tenant": run.tenant_id, "window": window, "now": now}
    statement = _inserting_new(tuple(values))
    if before:
        statement, more = rows.before(session, statement, before)
        params |= more
    if log is not None and on_postgres(session):
        statement = _with_events(statement)
        params |= unnesting_params(run.id, run.tenant_id, log.stored_with_run(run.id), now)
    run.enqueued_at = session.execute(statement, params).scalar_one()
    return run.enqueued_at is not None


@functools.lru_cache(maxsize=64)
def _with_events(statement):
    return statement.add_cte(unnesting().cte("events"))


@functools.lru_cache(maxsize=16)
def _inserting_new(keys: tuple[str, ...]):
    handed_out = (
        select(func.count())
        .select_from(Run.__table__)
        .where(C.tenant_id == bindparam("tenant"), text(HANDED_OUT_SQL))
        .scalar_subquery()
    )
    enqueued_at = case((handed_out < bindparam("window"), bindparam("now", type_=C.enqueued_at.type)))
    return insert(Run.__table__).values(**rows.bound(keys), enqueued_at=enqueued_at).returning(C.enqueued_at)


def hand_out(session: Session, tenant_id: str, count: int, now: float) -> list[str]:
    """Mark the tenant's `count` oldest waiting runs enqueued now, and return them (the caller enqueues)."""
    # Not named after columns: an UPDATE reserves those names for its SET clause.
    params = {"tenant": tenant_id, "count": count, "now": now}
    return list(session.scalars(_handing_out(), params))


@functools.cache
def _handing_out():
    oldest = (
        select(C.id)
        .where(C.tenant_id == bindparam("tenant"), text(WAITING_SQL))
        .order_by(C.created_us)
        .limit(bindparam("count"))
        .with_for_update(skip_locked=True)
    )
    return rows.updating(Run).where(C.id.in_(oldest)).values(enqueued_at=bindparam("now")).returning(C.id)


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
