"""Leases: which worker may write a run's turn. The owner token is the fencing token of every turn write.

A lease is taken with one guarded UPDATE (free, or lapsed), renewed by a heartbeat thread while the model
runs, and released by the transition that ends the turn. A worker that dies simply stops renewing; the
scheduler's sweep then hands the run to another worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.domain.lifecycle import WORKABLE, RunStatus
from orchestrator.services.context import Context

log = logging.getLogger(__name__)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def take(session: Session, ctx: Context, run_id: str, owner: str) -> tuple[models.Run | None, bool]:
    """Take the run's lease if it is free, or else if it lapsed, in the caller's transaction. Says whether
    it was a takeover (the holder died or stalled), which is also counted on the run. Two guarded updates
    rather than one, because only the second kind is a takeover and RETURNING sees only the new row."""
    now = ctx.clock.now()
    run = _take_where(session, ctx, run_id, owner, now, models.Run.lease_owner.is_(None), taken_over=False)
    if run is not None:
        return run, False
    run = _take_where(session, ctx, run_id, owner, now, models.Run.lease_expires_at < now, taken_over=True)
    return run, run is not None


def _take_where(
    session: Session, ctx: Context, run_id: str, owner: str, now: float, where, *, taken_over: bool
) -> models.Run | None:
    return session.execute(
        update(models.Run)
        .where(models.Run.id == run_id, models.Run.status.in_([s.value for s in WORKABLE]), where)
        .values(
            lease_owner=owner,
            lease_expires_at=now + ctx.settings.lease_seconds,
            version=models.Run.version + 1,
            takeovers=models.Run.takeovers + int(taken_over),
        )
        .returning(models.Run)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def release_all(ctx: Context) -> tuple[list[str], int]:
    """Clear the lease of every unfinished run and mark it enqueued now; the caller enqueues the ids. Only
    for a process that knows no one else works on these runs (the embedded mode, holding its data
    directory). Even a previous owner still finishing a turn is fenced out: its next renewal or write finds
    the lease gone and it gives the run up. Returns the ids and how many leases were taken over (counted
    here, as `take` counts a lapsed lease, which it no longer sees once cleared)."""
    workable = models.Run.status.in_([s.value for s in WORKABLE])
    with ctx.uow() as uow:
        # Free ones first: once cleared, the held ones would match "free" too.
        free = list(
            uow.session.scalars(_clear_leases(ctx, workable, models.Run.lease_owner.is_(None), False))
        )
        taken = list(
            uow.session.scalars(_clear_leases(ctx, workable, models.Run.lease_owner.is_not(None), True))
        )
        uow.commit()
    return taken + free, len(taken)


def _clear_leases(ctx: Context, workable, held, taken_over: bool):
    return (
        update(models.Run)
        .where(workable, held)
        .values(
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=ctx.clock.now(),
            version=models.Run.version + 1,
            takeovers=models.Run.takeovers + int(taken_over),
        )
        .returning(models.Run.id)
    )


def release(ctx: Context, run_id: str, owner: str) -> None:
    with ctx.uow() as uow:
        uow.session.execute(
            update(models.Run)
            .where(models.Run.id == run_id, models.Run.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )
        uow.commit()


def renew(ctx: Context, run_id: str, owner: str) -> RunStatus | None:
    """Extend the lease; the run's status, or None when this worker no longer owns it."""
    with ctx.uow() as uow:
        status = uow.session.execute(
            update(models.Run)
            .where(models.Run.id == run_id, models.Run.lease_owner == owner)
            .values(lease_expires_at=ctx.clock.now() + ctx.settings.lease_seconds)
            .returning(models.Run.status)
        ).scalar_one_or_none()
        uow.commit()
        return RunStatus(status) if status else None


class Heartbeat:
    """Renews the lease in the background and notices cancellation within `interval` seconds."""

    def __init__(self, ctx: Context, run_id: str, owner: str):
        self._ctx, self._run_id, self._owner = ctx, run_id, owner
        self.interval = min(ctx.settings.lease_seconds / 3, 0.5)
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop = threading.Event()
        # Called (from the heartbeat thread) when the run is cancelled or lost, to wake the turn at once.
        self.on_signal: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                status = renew(self._ctx, self._run_id, self._owner)
            except Exception:
                # The database is unreachable: keep trying while the lease may still be ours. Past its
                # length another worker may have taken the run: stop, so this one streams nothing more.
                log.warning("lease renewal failed for %s", self._run_id, exc_info=True)
                if time.monotonic() - renewed > self._ctx.settings.lease_seconds:
                    self.lost.set()
                    self.on_signal()
                    return
                continue
            renewed = time.monotonic()
            if status is RunStatus.CANCELLING:
                self.cancelled.set()
                self.on_signal()
            elif status is not RunStatus.IN_PROGRESS:
                self.lost.set()
                self.on_signal()
                return
