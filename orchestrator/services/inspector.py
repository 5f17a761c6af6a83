"""What the run inspector (/ui) shows: a tenant's threads, a thread's runs, and one run in full — its
lifecycle events with their times, steps with tool calls, the thread's messages and the lease state.
Responses and conversations are in `inspector_responses`, which shares this module's internals and
timeline.

Read-only and tenant-scoped like every other service; these are not OpenAI API objects, so the shapes
are this module's own.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db import threads as db_threads
from orchestrator.db.models import RunEvent
from orchestrator.domain.errors import not_found
from orchestrator.domain.lifecycle import Api
from orchestrator.engine import wire

MAX_EVENTS = 5000
# Events whose name ends so are a reply's pieces; the timeline shows a stretch of them as one row.
DELTAS = "%.delta"
MAX_MESSAGES = 200


def list_threads(ctx: Context, tenant_id: str, *, limit: int, before: str | None = None) -> dict:
    """The tenant's threads, newest first, each with its run count, latest run and first message."""
    with ctx.uow() as uow:
        session = uow.session
        statement = select(models.Thread).where(models.Thread.tenant_id == tenant_id)
        if before:
            cursor = session.scalar(
                select(models.Thread.created_us).where(
                    models.Thread.id == before, models.Thread.tenant_id == tenant_id
                )
            )
            if cursor is None:
                raise not_found("thread", before)
            statement = statement.where(models.Thread.created_us < cursor)
        rows = list(session.scalars(statement.order_by(models.Thread.created_us.desc()).limit(limit + 1)))
        page, more = rows[:limit], len(rows) > limit
        ids = [row.id for row in page]
        latest, previews = _latest_runs(session, ids), _first_messages(session, ids)
        data = [
            {**_thread(row), **latest.get(row.id, {"runs": 0}), "preview": previews.get(row.id)}
            for row in page
        ]
        return {"data": data, "has_more": more}


def _thread(row: models.Thread) -> dict:
    return {"id": row.id, "created_at": row.created_at, "metadata": row.metadata_}


def _latest_runs(session: Session, thread_ids: list[str]) -> dict[str, dict]:
    if not thread_ids:
        return {}
    counts = (
        select(
            models.Run.thread_id,
            func.max(models.Run.created_us).label("newest"),
            func.count().label("runs"),
        )
        .where(models.Run.thread_id.in_(thread_ids))
        .group_by(models.Run.thread_id)
        .subquery()
    )
    rows = session.execute(
        select(models.Run.thread_id, models.Run.id, models.Run.status, counts.c.runs).join(
            counts, and_(models.Run.thread_id == counts.c.thread_id, models.Run.created_us == counts.c.newest)
        )
    )
    return {
        thread_id: {"runs": runs, "last_run": {"id": run_id, "status": status}}
        for thread_id, run_id, status, runs in rows
    }


def _first_messages(session: Session, thread_ids: list[str]) -> dict[str, str]:
    if not thread_ids:
        return {}
    first = (
        select(models.Message.thread_id, func.min(models.Message.created_us).label("oldest"))
        .where(models.Message.thread_id.in_(thread_ids))
        .group_by(models.Message.thread_id)
        .subquery()
    )
    rows = session.execute(
        select(models.Message.thread_id, models.Message.content).join(
            first,
            and_(models.Message.thread_id == first.c.thread_id, models.Message.created_us == first.c.oldest),
        )
    )
    return {thread_id: _text(content)[:200] for thread_id, content in rows}


def _text(content: list) -> str:
    parts = [part.get("text", {}).get("value", "") for part in content or [] if part.get("type") == "text"]
    return " ".join(parts)


def thread_runs(ctx: Context, tenant_id: str, thread_id: str, *, limit: int) -> dict:
    """One thread and its runs, newest first."""
    with ctx.uow() as uow:
        session = uow.session
        thread = db_threads.load(session, tenant_id, thread_id)
        rows = session.scalars(
            select(models.Run)
            .where(models.Run.thread_id == thread_id, models.Run.tenant_id == tenant_id)
            .order_by(models.Run.created_us.desc())
            .limit(limit)
        )
        return {"thread": _thread(thread), "runs": [_run_summary(row) for row in rows]}


def _run_summary(row: models.Run) -> dict:
    return {
        "id": row.id,
        "thread_id": row.thread_id,
        "status": row.status,
        "model": row.model,
        "created_at": row.created_at,
        "completed_at": row.completed_at or row.failed_at or row.cancelled_at,
        "usage": row.usage,
        "takeovers": row.takeovers,
    }


def run_detail(ctx: Context, tenant_id: str, run_id: str) -> dict:
    """Everything about one run, for its timeline."""
    with ctx.uow() as uow:
        session = uow.session
        run = session.scalar(
            select(models.Run).where(
                models.Run.id == run_id, models.Run.tenant_id == tenant_id, models.Run.api == Api.ASSISTANTS
            )
        )
        if run is None:
            raise not_found("run", run_id)
        return {
            "run": wire.run(run),
            "internals": internals(ctx, run),
            "events": events(session, run),
            "steps": [wire.step(step) for step in _steps(session, run)],
            "messages": [wire.message(message) for message in _messages(session, run)],
        }


def internals(ctx: Context, run: models.Run) -> dict:
    """What the engine holds about a run (or a response): its turns, fencing version, events numbered,
    lease takeovers and whether a worker holds its lease now."""
    now = ctx.clock.now()
    held = run.lease_owner is not None and (run.lease_expires_at or 0) > now
    return {
        "turn": run.turn,
        "version": run.version,
        "event_seq": run.event_seq,
        "takeovers": run.takeovers,
        "lease_held": held,
        "lease_expires_in": round(run.lease_expires_at - now, 3) if held else None,
    }


def events(session: Session, run: models.Run) -> list[dict]:
    """The run's stored events in order, each stretch of one kind of delta collapsed into one row with its
    count and its first and last seq and times (a response stores every delta: thousands for a long
    reply). Only the deltas' numbers and times are read, never their data."""
    scope = (RunEvent.run_id == run.id, RunEvent.tenant_id == run.tenant_id)
    rows = session.execute(
        select(RunEvent.seq, RunEvent.event, RunEvent.created_at, RunEvent.data)
        .where(*scope, RunEvent.event.not_like(DELTAS))
        .order_by(RunEvent.seq)
        .limit(MAX_EVENTS)
    )
    shown = [{"seq": seq, "event": event, "at": at, "data": data} for seq, event, at, data in rows]
    merged = sorted(shown + _delta_stretches(session, scope), key=lambda row: row["seq"])
    return merged[:MAX_EVENTS]


def _delta_stretches(session: Session, scope: tuple) -> list[dict]:
    # Gaps and islands: within one kind of delta, seq minus its rank is the same along a stretch that no
    # other event interrupts.
    rank = func.row_number().over(partition_by=RunEvent.event, order_by=RunEvent.seq)
    numbered = (
        select(RunEvent.seq, RunEvent.event, RunEvent.created_at, (RunEvent.seq - rank).label("island"))
        .where(*scope, RunEvent.event.like(DELTAS))
        .subquery()
    )
    rows = session.execute(
        select(
            numbered.c.event,
            func.min(numbered.c.seq),
            func.max(numbered.c.seq),
            func.count(),
            func.min(numbered.c.created_at),
            func.max(numbered.c.created_at),
        )
        .group_by(numbered.c.event, numbered.c.island)
        .order_by(func.min(numbered.c.seq))
        .limit(MAX_EVENTS)
    )
    return [
        {
            "seq": first,
            "last_seq": last,
            "event": event,
            "count": count,
            "at": at,
            "until": until,
            "data": None,
        }
        for event, first, last, count, at, until in rows
    ]


def _steps(session: Session, run: models.Run) -> list[models.RunStep]:
    return list(
        session.scalars(
            select(models.RunStep)
            .where(models.RunStep.run_id == run.id, models.RunStep.tenant_id == run.tenant_id)
            .order_by(models.RunStep.created_us, models.RunStep.id)
        )
    )


def _messages(session: Session, run: models.Run) -> list[models.Message]:
    """The thread's latest messages, oldest first: the conversation the run saw and what it added."""
    rows = session.scalars(
        select(models.Message)
        .where(models.Message.thread_id == run.thread_id, models.Message.tenant_id == run.tenant_id)
        .order_by(models.Message.created_us.desc(), models.Message.id.desc())
        .limit(MAX_MESSAGES)
    )
    return list(reversed(list(rows)))
