"""The scheduler's periodic sweep: expire overdue runs, and hand out again runs nobody is working on
(a lapsed lease: the worker died; or a queued run never claimed: its queue message was lost)."""

from __future__ import annotations

import logging

from orchestrator.db import runs
from orchestrator.services import dispatch, idempotency, lifecycle
from orchestrator.services.context import Context

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    expired = sum(_expire_quietly(ctx, run_id) for run_id in _overdue(ctx))
    requeued = _requeue_orphans(ctx)
    handed_out = dispatch.sweep(ctx)
    _sweep_idempotency_keys(ctx)
    if expired or requeued or handed_out:
        log.info("sweep: expired %d, re-enqueued %d, handed out %d", expired, requeued, handed_out)
    _sweep_files(ctx)
    return {"expired": expired, "requeued": requeued, "handed_out": handed_out}


def _sweep_idempotency_keys(ctx: Context) -> None:
    try:
        idempotency.sweep(ctx)
    except Exception:
        log.warning("could not sweep idempotency keys this time", exc_info=True)


def _sweep_files(ctx: Context) -> None:
    """Files' share (ingestion_sweep): its failure must not stop the runs' sweep, nor theirs this one."""
    from orchestrator.services import ingestion_sweep

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
