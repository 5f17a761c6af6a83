"""The scheduler's periodic sweep: expire overdue runs, and hand out again runs nobody is working on
(a lapsed lease: the worker died; or a queued run never claimed: its queue message was lost)."""

from __future__ import annotations

import logging

from orchestrator.context import Context
from orchestrator.db import idempotency_keys, responses, runs
from orchestrator.engine import dispatch, lifecycle

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    expired = sum(_expire_quietly(ctx, run_id) for run_id in _overdue(ctx))
    requeued = _requeue_orphans(ctx)
    handed_out = dispatch.sweep(ctx)
    _sweep_idempotency_keys(ctx)
    _sweep_unstored_responses(ctx)
    if expired or requeued or handed_out:
        log.info("sweep: expired %d, re-enqueued %d, handed out %d", expired, requeued, handed_out)
    _sweep_files(ctx)
    return {"expired": expired, "requeued": requeued, "handed_out": handed_out}


def _sweep_idempotency_keys(ctx: Context) -> None:
    try:
        sweep_idempotency_keys(ctx)
    except Exception:
        log.warning("could not sweep idempotency keys this time", exc_info=True)


def _sweep_unstored_responses(ctx: Context) -> None:
    """Responses created with `store: false` go once they ended (a background one after a while)."""
    try:
        with ctx.uow() as uow:
            deleted = responses.purge_unstored(uow.session, ctx.timestamp())
            uow.commit()
    except Exception:
        log.warning("could not sweep unstored responses this time", exc_info=True)
        return
    if deleted:
        log.info("sweep: deleted %d ended responses that were not to be stored", deleted)


def sweep_idempotency_keys(ctx: Context) -> int:
    """Delete the keys older than their TTL; returns how many."""
    with ctx.uow() as uow:
        deleted = idempotency_keys.purge(uow.session, ctx.clock.now())
        uow.commit()
    if deleted:
        log.info("sweep: deleted %d expired idempotency keys", deleted)
    return deleted


def _sweep_files(ctx: Context) -> None:
    """Files' share (ingestion_sweep): its failure must not stop the runs' sweep, nor theirs this one."""
    from orchestrator.files import ingestion_sweep

    try:
        ingestion_sweep.sweep(ctx)
    except Exception:
        log.warning("file sweep failed; trying again next time", exc_info=True)


def _expire_quietly(ctx: Context, run_id: str) -> bool:
    """One run that cannot be expired now must not stop the sweep (it is tried again next time)."""
    try:
        return lifecycle.expire(ctx, run_id)
    except Exception:
        log.warning("could not expire %s this sweep", run_id, exc_info=True)
        return False


def _overdue(ctx: Context) -> list[str]:
    with ctx.uow() as uow:
        return runs.overdue(uow.session, ctx.clock.now())


def _requeue_orphans(ctx: Context) -> int:
    now = ctx.clock.now()
    with ctx.uow() as uow:
        run_ids = runs.requeue_orphans(uow.session, now, now - ctx.settings.requeue_after_seconds)
        uow.commit()
    for run_id in run_ids:
        ctx.queue.enqueue(run_id)
    return len(run_ids)


def release_all(ctx: Context) -> tuple[list[str], int]:
    """Clear the lease of every unfinished run and mark it enqueued now; the caller enqueues the ids. Only
    for a process that knows no one else works on these runs (the embedded mode, holding its data
    directory). Even a previous owner still finishing a turn is fenced out: its next renewal or write finds
    the lease gone and it gives the run up. Returns the ids and how many leases were taken over (counted
    here, as a claim counts a lapsed lease, which it no longer sees once cleared)."""
    with ctx.uow() as uow:
        released = runs.release_all(uow.session, ctx.clock.now())
        uow.commit()
    return released
