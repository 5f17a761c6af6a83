"""Advance one run: take the lease, play one model turn, end it. Safe to run twice for the same run.

    claim lease ─▶ queued→in_progress ─▶ build prompt ─▶ stream the model
        text       ─▶ message_creation step + message, deltas ─▶ completed | incomplete
        tool calls ─▶ tool_calls step, deltas ─▶ requires_action (the worker is then free)
        cancel     ─▶ partial message kept ─▶ cancelled
        error      ─▶ failed with last_error

Every write after the claim is fenced by the lease owner token, so a worker that lost its lease (it
stalled, or the run was cancelled or expired) cannot commit anything.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from orchestrator.db import models
from orchestrator.db.events import EventBatch
from orchestrator.db.transitions import transition
from orchestrator.domain.errors import LeaseLost, ServiceUnavailable
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.observability.turns import observed_turn, record_takeovers
from orchestrator.providers.base import ModelError, ModelProvider
from orchestrator.providers.registry import provider_for
from orchestrator.services import lease, prompt, runs
from orchestrator.services.context import Context
from orchestrator.services.endings import end_run
from orchestrator.services.turn import Turn

log = logging.getLogger(__name__)


def advance(ctx: Context, run_id: str, provider: ModelProvider | None = None) -> None:
    owner = ctx.leases().new_owner()
    run, started = _claim(ctx, run_id, owner)
    if run is None:
        return  # finished, waiting for tool outputs, or another worker holds a live lease
    # Every normal ending releases the lease in its own transition; only the others release it here.
    try:
        with observed_turn(run):
            _advance_claimed(ctx, run, owner, provider, started)
    except LeaseLost:
        # A cancel that landed mid-turn is finished here while this worker still holds the lease;
        # otherwise the run moved on without this worker.
        _cancel_if_still_ours(ctx, run_id, owner)
        _release_quietly(ctx, run_id, owner)
    except (DBAPIError, ServiceUnavailable):
        # Postgres is unreachable: leave the lease to lapse; the sweep hands the run out again.
        log.warning("database error while advancing %s", run_id, exc_info=True)
        _release_quietly(ctx, run_id, owner)
        raise
    except Exception as error:
        log.exception("run %s failed", run_id)
        _fail(ctx, run_id, owner, ModelError(f"Sorry, something went wrong. ({type(error).__name__})"))
        _release_quietly(ctx, run_id, owner)


def _claim(ctx: Context, run_id: str, owner: str) -> tuple[models.Run | None, bool]:
    """Take the lease and, for a queued run, start it: one transaction. Says whether it started the run."""
    with ctx.uow() as uow:
        run, taken_over = lease.take(uow.session, ctx, run_id, owner)
        if run is None:
            return None, False
        started = run.status == RunStatus.QUEUED and not runs.is_overdue(ctx, run)
        if started:
            batch = EventBatch(run_id, run.tenant_id)
            run = transition(uow.session, batch, run_id, RunStatus.IN_PROGRESS, now=ctx.now(), owner=owner)
            if run is None:
                return None, False
            batch.write(uow, ctx.bus, run, ctx.clock.now())
        uow.commit()
    if taken_over:
        record_takeovers(1)
    return run, started


def _advance_claimed(
    ctx: Context, run: models.Run, owner: str, provider: ModelProvider | None, started: bool
) -> None:
    if runs.is_overdue(ctx, run) and runs.expire(ctx, run.id):
        return
    if run.status == RunStatus.CANCELLING:
        _end(ctx, run.id, owner, RunStatus.CANCELLED)
        return
    with ctx.uow() as uow:
        built = prompt.build(uow.session, run)
    if built.request is None:
        _end(ctx, run.id, owner, RunStatus.INCOMPLETE, incomplete_details={"reason": built.incomplete_reason})
        return
    model = provider or provider_for(run.model, ctx.settings)
    # A run this worker just started has no step in progress; one it took over in progress may.
    Turn(ctx, run, owner, model, built.request, resumed=not started).play()


def _end(ctx: Context, run_id: str, owner: str, target: RunStatus, **values) -> None:
    with ctx.uow() as uow:
        run = uow.session.get(models.Run, run_id)
        batch = EventBatch(run_id, run.tenant_id)
        ended = end_run(ctx, uow.session, batch, run_id, target, owner=owner, **values)
        batch.write(uow, ctx.bus, ended, ctx.clock.now())
        uow.commit()


def _cancel_if_still_ours(ctx: Context, run_id: str, owner: str) -> None:
    try:
        _end(ctx, run_id, owner, RunStatus.CANCELLED)
    except LeaseLost:
        log.info("run %s moved on without this worker", run_id)
    except Exception:
        log.warning("could not finish the cancel of %s; the sweep will", run_id, exc_info=True)


def _fail(ctx: Context, run_id: str, owner: str, error: ModelError) -> None:
    try:
        _end(ctx, run_id, owner, RunStatus.FAILED, last_error={"code": error.code, "message": error.message})
    except LeaseLost:
        pass
    except Exception:
        log.exception("could not record the failure of run %s", run_id)


def _release_quietly(ctx: Context, run_id: str, owner: str) -> None:
    try:
        lease.release(ctx, run_id, owner)
    except Exception:
        log.warning("could not release the lease on %s; it will lapse", run_id, exc_info=True)
