"""Advance one run: take the lease, play its model calls, end the leg. Safe to run twice for the same run.

    claim (lease, queued→in_progress) ─▶ build prompt ─▶ Turn.play (services/turn.py)
        text       ─▶ message_creation step + message, deltas ─▶ completed | incomplete
        tool calls ─▶ tool_calls step, deltas ─▶ requires_action (the worker is then free)
        server-side tool calls ─▶ run them, complete their step ─▶ build the prompt again, next call
        cancel     ─▶ partial message kept ─▶ cancelled
        error      ─▶ failed with last_error

Every write after the claim is fenced by the lease owner token (services/turn.py).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from orchestrator.context import Context
from orchestrator.db import models, runs
from orchestrator.db.runs import Writer
from orchestrator.db.uow import is_outage
from orchestrator.domain.errors import ServiceUnavailable, StaleWrite
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.domain.model import ModelProvider
from orchestrator.engine import dispatch, faces, lifecycle, prompt
from orchestrator.engine.turn import Turn
from orchestrator.observability.turns import observed_turn, record_takeovers
from orchestrator.providers.registry import provider_for

log = logging.getLogger(__name__)

# Model calls one leg may make (each after server-side tools ran) before the run fails: a model that
# keeps searching or running code without ever answering must not hold a worker for ever.
MAX_CALLS_PER_LEG = 16


def advance(ctx: Context, run_id: str, provider: ModelProvider | None = None) -> None:
    owner = ctx.leases.new_owner()
    claimed = _claim(ctx, run_id, owner)
    if claimed is None:
        return  # finished, waiting for tool outputs, or another worker holds a live lease
    claim, first = claimed
    # Every normal ending releases the lease in its own move; only the others release it here.
    try:
        with observed_turn(claim.run):
            _advance_claimed(ctx, claim.run, owner, provider, claim.started, first)
    except StaleWrite:
        # A cancel that landed mid-turn is finished here while this worker still holds the lease;
        # otherwise the run moved on without this worker.
        _cancel_if_still_ours(ctx, run_id, owner)
        _release_quietly(ctx, run_id, owner)
    except DBAPIError as error:
        if is_outage(error):
            _outage(ctx, run_id, owner)
            raise
        # The database refuses this row (a value it cannot hold, a constraint): it never will, and handing
        # the run out again would redo the call's effects (code run, model paid) for ever. It fails now.
        log.exception("run %s wrote what the database refuses", run_id)
        reason = type(getattr(error, "orig", None) or error).__name__
        # Its message keeps what is stored: the partial reply may be the very value refused.
        _fail(ctx, run_id, owner, f"The run's output could not be stored ({reason}).", content=[])
        _release_quietly(ctx, run_id, owner)
    except ServiceUnavailable:
        _outage(ctx, run_id, owner)
        raise
    except Exception as error:
        log.exception("run %s failed", run_id)
        _fail(ctx, run_id, owner, f"Sorry, something went wrong. ({type(error).__name__})")
        _release_quietly(ctx, run_id, owner)


def _outage(ctx: Context, run_id: str, owner: str) -> None:
    """Postgres (or the sandbox) is away: leave the lease to lapse; the sweep hands the run out again."""
    log.warning("a dependency is unavailable while advancing %s", run_id, exc_info=True)
    _release_quietly(ctx, run_id, owner)


def _claim(ctx: Context, run_id: str, owner: str) -> tuple[runs.Claim, prompt.Prompt | None] | None:
    """Take the lease and, for a queued run, start it: one statement and its event, one transaction, which
    also reads the first model call's prompt. A run whose tenant is at its max_active_runs is not started:
    it goes back to waiting (services/dispatch.py)."""
    with ctx.uow() as uow:
        claimed = runs.claim(
            uow.session, run_id, owner, now=ctx.clock.now(), lease_seconds=ctx.settings.lease_seconds
        )
        if claimed is None:
            return None
        run = claimed.run
        if claimed.started and dispatch.over_limit(ctx, uow.session, run.tenant_id):
            uow.session.rollback()  # neither the lease nor the start happened
            full = True
        else:
            full = False
            if claimed.started:
                uow.events.numbered(run.id, run.tenant_id, run, 1)
                started = lifecycle.event_of(
                    uow.session, run, RunStatus.IN_PROGRESS, run.started_at, produced=[]
                )
                uow.events.record(run.id, run.tenant_id, *started)
            workable = run.status is RunStatus.IN_PROGRESS and not lifecycle.is_overdue(ctx, run)
            first = _first_prompt(ctx, uow.session, run) if workable else None
            uow.commit()
    if full:
        dispatch.park(ctx, run_id)
        return None
    if claimed.taken_over:
        record_takeovers(1)
    return claimed, first


def _first_prompt(ctx: Context, session, run: models.Run) -> prompt.Prompt | None:
    try:
        return faces.build_prompt(ctx, session, run)
    except DBAPIError:
        raise
    except Exception:
        return None  # built again under the turn's error handling, which fails the run with last_error


def _advance_claimed(
    ctx: Context,
    run: models.Run,
    owner: str,
    provider: ModelProvider | None,
    started: bool,
    first: prompt.Prompt | None = None,
) -> None:
    """`first`: the first call's prompt, read with the claim."""
    if lifecycle.is_overdue(ctx, run) and lifecycle.expire(ctx, run.id):
        return
    if run.status is RunStatus.CANCELLING:
        _end(ctx, run.id, owner, RunStatus.CANCELLED)
        return
    model = provider or provider_for(run.model, ctx.settings)
    # A run this worker just started has no step in progress; one it took over in progress may.
    resumed = not started
    for _call in range(MAX_CALLS_PER_LEG):
        built, first = first, None
        if built is None:
            with ctx.uow() as uow:
                built = faces.build_prompt(ctx, uow.session, run)
        if built.request is None:
            reason = {"reason": built.incomplete_reason}
            _end(ctx, run.id, owner, RunStatus.INCOMPLETE, incomplete_details=reason)
            return
        if not Turn(ctx, run, owner, model, built.request, resumed=resumed).play():
            return
        resumed = False
        with ctx.uow() as uow:
            run = runs.get(uow.session, run.id)
            uow.session.expunge(run)
    message = f"The model called server-side tools {MAX_CALLS_PER_LEG} times in a row without answering."
    _end(ctx, run.id, owner, RunStatus.FAILED, last_error={"code": "server_error", "message": message})


def _end(ctx: Context, run_id: str, owner: str, target: RunStatus, **values) -> None:
    with ctx.uow() as uow:
        lifecycle.end(ctx, uow, run_id, target, Writer.holder(owner), **values)
        uow.commit()


def _cancel_if_still_ours(ctx: Context, run_id: str, owner: str) -> None:
    try:
        _end(ctx, run_id, owner, RunStatus.CANCELLED)
    except StaleWrite:
        log.info("run %s moved on without this worker", run_id)
    except Exception:
        log.warning("could not finish the cancel of %s; the sweep will", run_id, exc_info=True)


def _fail(ctx: Context, run_id: str, owner: str, message: str, **values) -> None:
    try:
        error = {"code": "server_error", "message": message}
        _end(ctx, run_id, owner, RunStatus.FAILED, last_error=error, **values)
    except StaleWrite:
        pass
    except Exception:
        log.exception("could not record the failure of run %s", run_id)


def _release_quietly(ctx: Context, run_id: str, owner: str) -> None:
    try:
        with ctx.uow() as uow:
            runs.release(uow.session, run_id, owner)
            uow.commit()
    except Exception:
        log.warning("could not release the lease on %s; it will lapse", run_id, exc_info=True)
