"""The scheduler's periodic sweep: expire overdue runs, and hand out again runs nobody is working on
(a lapsed lease: the worker died; or a queued run never claimed: its queue message was lost)."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from orchestrator.db import models
from orchestrator.domain.lifecycle import EXPIRABLE, WORKABLE, RunStatus
from orchestrator.services import runs
from orchestrator.services.context import Context

log = logging.getLogger(__name__)


def sweep(ctx: Context) -> dict[str, int]:
    expired = sum(_expire_quietly(ctx, run_id) for run_id in _overdue(ctx))
    requeued = _requeue_orphans(ctx)
    if expired or requeued:
        log.info("sweep: expired %d, re-enqueued %d", expired, requeued)
    _sweep_files(ctx)
    return {"expired": expired, "requeued": requeued}


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
        return runs.expire(ctx, run_id)
    except Exception:
        log.warning("could not expire %s this sweep", run_id, exc_info=True)
        return False


def _overdue(ctx: Context, limit: int = 500) -> list[str]:
    with ctx.uow() as uow:
        return list(
            uow.session.scalars(
                select(models.Run.id)
                .where(
                    models.Run.status.in_([s.value for s in EXPIRABLE]), models.Run.expires_at <= ctx.now()
                )
                .limit(limit)
            )
        )


def _requeue_orphans(ctx: Context, limit: int = 500) -> int:
    now = ctx.clock.now()
    stale = now - ctx.settings.requeue_after_seconds
    unleased = models.Run.lease_owner.is_(None) | (models.Run.lease_expires_at < now)
    # In progress or cancelling without a live lease: the worker died. Queued and not claimed for a
    # while: the queue message was lost (Redis restarted empty, or a crash between commit and enqueue).
    orphaned = (models.Run.status != RunStatus.QUEUED.value) | (models.Run.enqueued_at < stale)
    with ctx.uow() as uow:
        run_ids = list(
            uow.session.scalars(
                update(models.Run)
                .where(
                    models.Run.id.in_(
                        select(models.Run.id)
                        .where(
                            models.Run.status.in_([s.value for s in WORKABLE]),
                            unleased,
                            orphaned,
                            (models.Run.enqueued_at.is_(None)) | (models.Run.enqueued_at < now - 1.0),
                        )
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .values(enqueued_at=now)
                .returning(models.Run.id)
            )
        )
        uow.commit()
    for run_id in run_ids:
        ctx.queue.enqueue(run_id)
    return len(run_ids)
