"""The sweep's share for files: re-enqueue chunk sets nobody is ingesting (a lapsed lease: the worker
died; never claimed for a while: the queue message was lost), settle store files whose chunk set ended
without them, and delete files past their `expires_at` and containers past their expiry. Called from
engine/sweeper.py; the statements on chunk sets are the chunk set store's (db/chunk_sets.py), as the runs'
sweep uses the run store's."""

from __future__ import annotations

import logging

from orchestrator.context import Context
from orchestrator.db import chunk_sets
from orchestrator.files import containers, store_files, uploads

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    counts = {"ingestions_requeued": requeue(ctx), "store_files_settled": settle_stragglers(ctx)}
    counts["files_expired"] = uploads.expire(ctx)
    counts["containers_expired"] = containers.expire(ctx)
    if any(counts.values()):
        log.info("file sweep: %s", counts)
    return counts


def requeue(ctx: Context, limit: int = 200) -> int:
    """Lapsed leases always; sets never claimed only while the ingestion queue is empty: 10,000 files
    attached at once wait there for minutes, and sending each again every `requeue_after_seconds` only
    made duplicates for the workers to discard (a queue that cannot say how long it is: as if empty)."""
    now = ctx.clock.now()
    lost = not ctx.queue.ingestion_depth()
    with ctx.uow() as uow:
        stale = now - ctx.settings.requeue_after_seconds
        ids = chunk_sets.requeue(uow.session, now, stale, limit, lost=lost)
        uow.commit()
    for chunk_set_id in ids:
        ctx.queue.enqueue_ingestion(chunk_set_id)
    return len(ids)


def settle_stragglers(ctx: Context, limit: int = 200) -> int:
    """Store files left in progress on a finished chunk set (a safety net: attach and completion lock the
    chunk set's row, so this should find none)."""
    with ctx.uow() as uow:
        finished = chunk_sets.stragglers(uow.session, limit)
        settled = sum(store_files.settle(uow.session, chunk_set) for chunk_set in finished)
        uow.commit()
    return settled


def release_all(ctx: Context) -> list[str]:
    """`orchestrator dev` at start: every unfinished chunk set is ours to hand out again at once."""
    with ctx.uow() as uow:
        ids = chunk_sets.release_all(uow.session, ctx.clock.now())
        uow.commit()
    return ids
