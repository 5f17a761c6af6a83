"""The sweep's share for files: re-enqueue chunk sets nobody is ingesting (a lapsed lease: the worker
died; never claimed for a while: the queue message was lost), settle store files whose chunk set ended
without them, and delete files past their `expires_at`. Called from services/sweeper.py."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from orchestrator.context import Context
from orchestrator.db.retrieval_models import ChunkSet, VectorStoreFile
from orchestrator.domain.retrieval import ChunkSetStatus, StoreFileStatus
from orchestrator.files import store_files, uploads

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    counts = {"ingestions_requeued": requeue(ctx), "store_files_settled": settle_stragglers(ctx)}
    counts["files_expired"] = uploads.expire(ctx)
    if any(counts.values()):
        log.info("file sweep: %s", counts)
    return counts


def requeue(ctx: Context, limit: int = 200) -> int:
    now = ctx.clock.now()
    stale = now - ctx.settings.requeue_after_seconds
    lapsed = ChunkSet.lease_owner.is_not(None) & (ChunkSet.lease_expires_at < now)
    lost = ChunkSet.lease_owner.is_(None) & (ChunkSet.enqueued_at.is_(None) | (ChunkSet.enqueued_at < stale))
    with ctx.uow() as uow:
        ids = list(
            uow.session.scalars(
                update(ChunkSet)
                .where(
                    ChunkSet.id.in_(
                        select(ChunkSet.id)
                        .where(ChunkSet.status == ChunkSetStatus.IN_PROGRESS.value, lapsed | lost)
                        .where(ChunkSet.enqueued_at.is_(None) | (ChunkSet.enqueued_at < now - 1.0))
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .values(enqueued_at=now)
                .returning(ChunkSet.id)
            )
        )
        uow.commit()
    for chunk_set_id in ids:
        ctx.queue.enqueue_ingestion(chunk_set_id)
    return len(ids)


def settle_stragglers(ctx: Context, limit: int = 200) -> int:
    """Store files left in progress on a finished chunk set (a safety net: attach and completion lock the
    chunk set's row, so this should find none)."""
    with ctx.uow() as uow:
        finished = list(
            uow.session.scalars(
                select(ChunkSet)
                .join(VectorStoreFile, VectorStoreFile.chunk_set_id == ChunkSet.id)
                .where(
                    VectorStoreFile.status == StoreFileStatus.IN_PROGRESS.value,
                    ChunkSet.status != ChunkSetStatus.IN_PROGRESS.value,
                )
                .distinct()
                .limit(limit)
            )
        )
        settled = sum(store_files.settle(uow.session, chunk_set) for chunk_set in finished)
        uow.commit()
    return settled


def release_all(ctx: Context) -> list[str]:
    """`orchestrator dev` at start: every unfinished chunk set is ours to hand out again at once."""
    with ctx.uow() as uow:
        ids = list(
            uow.session.scalars(
                update(ChunkSet)
                .where(ChunkSet.status == ChunkSetStatus.IN_PROGRESS.value)
                .values(lease_owner=None, lease_expires_at=None, enqueued_at=ctx.clock.now())
                .returning(ChunkSet.id)
            )
        )
        uow.commit()
    return ids
