"""The chunk set store: every statement on `chunk_sets` that ingestion (files/ingestion.py) and its sweep
(files/ingestion_sweep.py) make. The lifecycle table (`CHUNK_SET` in domain/retrieval.py) decides which
moves exist; this module applies them, as db/runs.py does for runs.

A chunk set is durable work held under a lease like a run: taken with one guarded UPDATE (`claim`: free, or
lapsed), renewed by the process's LeaseKeeper (`LEASES`, db/leases.py), written only by its holder
(`fence`: `UPDATE … WHERE id AND lease_owner AND status = in_progress`, which also locks the row until the
transaction ends) and given up by the move that ends it (`complete`, `fail`) or by `release`. A guarded
write that matches no row raises StaleWrite: the set moved on (another worker took it, it was deleted with
its file) without this writer.

The statements are built once per shape over the table's columns (`C`) and executed with bound parameters.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from orchestrator.db import leases, rows
from orchestrator.db.retrieval_models import ChunkSet, VectorStoreFile
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.retrieval import (
    CHUNK_SET,
    CHUNK_SET_WORKABLE,
    STORE_FILE,
    ChunkSetStatus,
    IngestError,
)

C = ChunkSet.__table__.c

# What the process's LeaseKeeper renews, and what a chunk set's status tells its holder: nothing cancels
# an ingestion, so any status but in_progress means the hold is lost.
LEASES = leases.Kind("chunk set", ChunkSet.__table__, carry_on=CHUNK_SET_WORKABLE)


def _in(statuses: frozenset[ChunkSetStatus]):
    return C.status.in_(sorted(statuses))


def claim(session: Session, chunk_set_id: str, owner: str, *, now: float, lease_seconds: float) -> Any:
    """Take the set's lease if it is being ingested and its lease is free or lapsed, counting the attempt;
    the row, or None (another worker holds it, or it ended)."""
    params = {"chunk_set_id": chunk_set_id, "owner": owner, "now": now, "until": now + lease_seconds}
    return session.execute(_claiming(), params).one_or_none()


@functools.cache
def _claiming():
    unleased = C.lease_owner.is_(None) | (C.lease_expires_at < bindparam("now"))
    return (
        rows.updating(ChunkSet)
        .where(C.id == bindparam("chunk_set_id"), _in(CHUNK_SET_WORKABLE), unleased)
        .values(lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"), attempts=C.attempts + 1)
        .returning(*rows.columns(ChunkSet))
    )


def fence(session: Session, chunk_set_id: str, owner: str, **values: Any) -> Any:
    """Write the set (`values`, or nothing) as its lease holder, locking its row until the transaction
    ends: the fencing token of every ingestion write. The row, or StaleWrite."""
    statement = _fencing(tuple(sorted(values)))
    row = session.execute(statement, _params(chunk_set_id, owner, values)).one_or_none()
    if row is None:
        raise StaleWrite(f"chunk set {chunk_set_id} is no longer this worker's to write")
    return row


@functools.lru_cache(maxsize=8)
def _fencing(keys: tuple[str, ...]):
    # With nothing to write the holder writes its own token again: an UPDATE is what takes the row's lock
    # on either database (SQLite has no SELECT … FOR UPDATE).
    written = rows.bound(keys) or {"lease_owner": C.lease_owner}
    return _holders(_in(CHUNK_SET_WORKABLE)).values(**written).returning(*rows.columns(ChunkSet))


def complete(session: Session, chunk_set_id: str, owner: str, *, dimensions: int | None) -> Any:
    """Move the holder's set to completed and release its lease; its usage then counts its vectors too
    (the chunks' text was counted when they were stored). The row, or StaleWrite."""
    params = {"vector_bytes": (dimensions or 0) * 4, **rows.values({"dimensions": dimensions})}
    return _moved(session, _completing(), chunk_set_id, owner, params, ChunkSetStatus.COMPLETED)


@functools.cache
def _completing():
    vectors = C.chunk_count * bindparam("vector_bytes")
    return _moving(ChunkSetStatus.COMPLETED, ("dimensions",)).values(usage_bytes=C.usage_bytes + vectors)


def fail(session: Session, chunk_set_id: str, owner: str, code: IngestError, message: str) -> Any:
    """Move the holder's set to failed with `last_error` and release its lease. The row, or StaleWrite."""
    params = rows.values({"last_error": {"code": code.value, "message": message}})
    statement = _moving(ChunkSetStatus.FAILED, ("last_error",))
    return _moved(session, statement, chunk_set_id, owner, params, ChunkSetStatus.FAILED)


@functools.lru_cache(maxsize=4)
def _moving(target: ChunkSetStatus, keys: tuple[str, ...]):
    """The holder's move to `target`, from the statuses the lifecycle table allows, releasing the lease."""
    return (
        _holders(_in(CHUNK_SET.sources_of(target)))
        .values(status=target, lease_owner=None, lease_expires_at=None, **rows.bound(keys))
        .returning(*rows.columns(ChunkSet))
    )


def _moved(session: Session, statement, chunk_set_id: str, owner: str, params: dict, target) -> Any:
    row = session.execute(statement, _params(chunk_set_id, owner, {}) | params).one_or_none()
    if row is None:
        raise StaleWrite(f"chunk set {chunk_set_id} cannot move to {target} for this worker")
    return row


def _holders(status):
    return rows.updating(ChunkSet).where(
        C.id == bindparam("chunk_set_id"), C.lease_owner == bindparam("owner"), status
    )


def _params(chunk_set_id: str, owner: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"chunk_set_id": chunk_set_id, "owner": owner, **rows.values(values)}


def release(session: Session, chunk_set_id: str, owner: str, *, now: float) -> None:
    """Give the lease back after a failure of ours, marked enqueued now: the sweep hands the set out again
    once `requeue_after_seconds` have passed."""
    LEASES.release(session, chunk_set_id, owner, enqueued_at=now)


# --- sweeps ------------------------------------------------------------------------------------------


def requeue(session: Session, now: float, stale: float, limit: int = 200, *, lost: bool = True) -> list[str]:
    """Mark enqueued now, and return, sets nobody ingests: a lapsed lease (the worker died), or (`lost`)
    no lease and not enqueued since `stale` (the queue message was lost)."""
    unattended = C.lease_owner.is_not(None) & (C.lease_expires_at < now)  # lapsed
    if lost:
        unattended |= C.lease_owner.is_(None) & (C.enqueued_at.is_(None) | (C.enqueued_at < stale))
    recent = C.enqueued_at.is_(None) | (C.enqueued_at < now - 1.0)
    chosen = (
        select(C.id)
        .where(_in(CHUNK_SET_WORKABLE), unattended, recent)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = rows.updating(ChunkSet).where(C.id.in_(chosen)).values(enqueued_at=now).returning(C.id)
    return list(session.scalars(statement))


def release_all(session: Session, now: float) -> list[str]:
    """`orchestrator dev` at start: clear the lease of every set being ingested, marked enqueued now."""
    statement = (
        rows.updating(ChunkSet)
        .where(_in(CHUNK_SET_WORKABLE))
        .values(lease_owner=None, lease_expires_at=None, enqueued_at=now)
        .returning(C.id)
    )
    return list(session.scalars(statement))


def stragglers(session: Session, limit: int = 200) -> list[Any]:
    """Ended sets with store files still waiting for them (a safety net: attaching and ending both lock
    the set's row, so there should be none)."""
    waiting = select(VectorStoreFile.chunk_set_id).where(
        VectorStoreFile.status.in_(sorted(STORE_FILE.unfinished))
    )
    statement = (
        select(*rows.columns(ChunkSet)).where(~_in(CHUNK_SET_WORKABLE), C.id.in_(waiting)).limit(limit)
    )
    return list(session.execute(statement).all())
