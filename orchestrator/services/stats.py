"""Numbers about the whole deployment, read at scrape time: runs by status from Postgres, the queue's
depth from the broker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.connection import on_postgres
from orchestrator.domain.lifecycle import Api, RunStatus


@dataclass(frozen=True)
class RunTotals:
    by_status: dict[tuple[str, str], int]  # (api, status) → runs: a thread's runs and responses apart


def run_totals(ctx: Context) -> RunTotals:
    """One grouped scan of the runs table (bounded by a statement timeout on Postgres)."""
    by_status = {(api.value, status.value): 0 for api in Api for status in RunStatus}
    run = models.Run
    with ctx.uow() as uow:
        session = uow.session
        if on_postgres(session):
            session.execute(select(func.set_config("statement_timeout", "5000", True)))
        rows = session.execute(select(run.api, run.status, func.count()).group_by(run.api, run.status))
        for api, status, count in rows:
            by_status[(api, status)] = count
    return RunTotals(by_status)


def waiting_tasks(ctx: Context) -> int | None:
    """Tasks waiting in the run queue; None where the queue is not in Redis (the embedded mode)."""
    return ctx.queue.depth()
