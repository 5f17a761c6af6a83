"""Handing runs to workers fairly between tenants, and within each tenant's limit.

The broker is one FIFO queue: if every run went into it as it was created, one tenant's flood of runs would
be ahead of everybody else's. So a tenant has a window: at most that many of its runs are handed out at
once (in the broker, or being advanced). A run created while its tenant's window is full waits in Postgres
(`queued`, not enqueued), in creation order, and is handed out when one of the tenant's runs stops being
worked on. Another tenant's run goes straight into the broker, behind at most a window's worth of each
busy tenant's runs.

    create ─▶ window has room? ─▶ enqueue now          else ─▶ wait in Postgres
    a leg ends (completed, requires_action, …) ─▶ hand out the tenant's oldest waiting run
    a claim of a tenant over its `max_active_runs` ─▶ the run goes back to waiting
    sweep ─▶ hand out waiting runs of every tenant whose window has room (after a crash, a raised limit)

The window is `ORCHESTRATOR_TENANT_WINDOW`, or the tenant's `max_active_runs` when that is smaller. A run
waiting for tool outputs holds no place in it. `max_active_runs` is exact (claims of a limited tenant are
serialized on its limits row); the window is kept approximately (two creates at once may both take the last
place), which is all fairness needs.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models, rows, runs
from orchestrator.db.uow import UnitOfWork


def window(ctx: Context, session: Session, tenant_id: str) -> int:
    """How many of the tenant's runs may be handed out at once; 0: no window."""
    limit = ctx.tenant_limits.get(tenant_id, session).max_active_runs
    sizes = [size for size in (ctx.settings.tenant_window, limit) if size]
    return min(sizes) if sizes else 0


def insert_new(ctx: Context, uow: UnitOfWork, run: models.Run, before: tuple = ()) -> bool:
    """INSERT a run the tenant creates now, after the rows `before` it (its new thread and messages):
    handed out at once when its window has room (True: the caller enqueues it after commit), else
    waiting (`enqueued_at` None). Its events, numbered already, may go in with it."""
    session = uow.session
    size = window(ctx, session, run.tenant_id)
    if not size:
        run.enqueued_at = ctx.clock.now()
        rows.add(session, *before, run)
        return True
    return runs.insert_new(session, run, window=size, now=ctx.clock.now(), before=before, log=uow.events)


def after_leg(ctx: Context, uow: UnitOfWork, tenant_id: str) -> None:
    """A run of the tenant stopped being worked on, in this unit of work: its place goes to the tenant's
    oldest waiting run, enqueued after commit."""
    if not window(ctx, uow.session, tenant_id):
        return
    for run_id in runs.hand_out(uow.session, tenant_id, 1, ctx.clock.now()):
        uow.after_commit(lambda run_id=run_id: ctx.queue.enqueue(run_id))


def over_limit(ctx: Context, session: Session, tenant_id: str) -> bool:
    """For a claim that just started one of the tenant's runs: is the tenant now past its max_active_runs?
    Takes the tenant's limits row lock until the transaction ends, so claims of one tenant count in turn."""
    limit = ctx.tenant_limits.get(tenant_id, session).max_active_runs
    if not limit:
        return False
    session.execute(
        select(models.TenantLimits.tenant_id)
        .where(models.TenantLimits.tenant_id == tenant_id)
        .with_for_update()
    )
    return runs.working(session, tenant_id) > limit


def park(ctx: Context, run_id: str) -> None:
    """A claimed run its tenant has no room for goes back to waiting, to be handed out as a place frees."""
    with ctx.uow() as uow:
        runs.park(uow.session, run_id)
        uow.commit()


def sweep(ctx: Context) -> int:
    """Hand out waiting runs of every tenant whose window has room; how many."""
    handed = []
    with ctx.uow() as uow:
        for tenant_id in runs.tenants_waiting(uow.session):
            size = window(ctx, uow.session, tenant_id) or 1_000_000
            room = size - runs.handed_out(uow.session, tenant_id)
            if room > 0:
                handed += runs.hand_out(uow.session, tenant_id, room, ctx.clock.now())
        uow.commit()
    for run_id in handed:
        ctx.queue.enqueue(run_id)
    return len(handed)
