"""What the run inspector (/ui) shows of the Responses face: a tenant's responses and conversations, one
response in full (its engine internals, its stored stream as a timeline, its input and output items, the
links to its previous response and its conversation) and one conversation (its items in order and the
responses that used it).

Read-only and tenant-scoped like services/inspector.py, whose internals and timeline it shares; another
tenant's ids are not found. It shows what the database holds: a response created with `store: false` is
listed (marked so) until the sweep deletes it, although the API no longer answers for it once it ended.
Items are shown whole, as stored (without the engine's own `_` keys), whatever `include` the request gave.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import conversations as db_conversations
from orchestrator.db import models
from orchestrator.db import responses as db_responses
from orchestrator.db.response_models import Conversation, ConversationItem, Response, ResponseItem, Side
from orchestrator.domain.errors import not_found
from orchestrator.domain.lifecycle import Api
from orchestrator.engine.responses import wire
from orchestrator.services import inspector

MAX_ITEMS = 500
MAX_USERS = 200
PREVIEW = 200

# --- responses -----------------------------------------------------------------------------------------


def list_responses(ctx: Context, tenant_id: str, *, limit: int, before: str | None = None) -> dict:
    """The tenant's responses, newest first, each with its first input text."""
    with ctx.uow() as uow:
        session = uow.session
        statement = (
            select(models.Run, Response)
            .join(Response, Response.id == models.Run.id)
            .where(models.Run.tenant_id == tenant_id, models.Run.api == Api.RESPONSES)
        )
        if before:
            statement = statement.where(models.Run.created_us < _response_cursor(session, tenant_id, before))
        found = session.execute(statement.order_by(models.Run.created_us.desc()).limit(limit + 1)).all()
        page, more = found[:limit], len(found) > limit
        previews = _first_inputs(session, [run.id for run, _echo in page])
        data = [_response_summary(run, echo) | {"preview": previews.get(run.id)} for run, echo in page]
        return {"data": data, "has_more": more}


def _response_cursor(session: Session, tenant_id: str, response_id: str) -> int:
    cursor = session.scalar(
        select(models.Run.created_us).where(
            models.Run.id == response_id, models.Run.tenant_id == tenant_id, models.Run.api == Api.RESPONSES
        )
    )
    if cursor is None:
        raise not_found("response", response_id)
    return cursor


def _response_summary(run: models.Run, echo: Response) -> dict:
    return {
        "id": run.id,
        "status": wire.STATUS[run.status],
        "model": run.model,
        "created_at": run.created_at,
        "background": echo.background,
        "store": echo.store,
        "conversation_id": echo.conversation_id,
        "previous_response_id": echo.previous_response_id,
    }


def _first_inputs(session: Session, response_ids: list[str]) -> dict[str, str]:
    """Each response's first input message's text."""
    if not response_ids:
        return {}
    messages = and_(
        ResponseItem.response_id.in_(response_ids),
        ResponseItem.side == Side.INPUT,
        ResponseItem.type == "message",
    )
    first = (
        select(ResponseItem.response_id, func.min(ResponseItem.position).label("first"))
        .where(messages)
        .group_by(ResponseItem.response_id)
        .subquery()
    )
    rows = session.execute(
        select(ResponseItem.response_id, ResponseItem.data).join(
            first,
            and_(
                ResponseItem.response_id == first.c.response_id,
                ResponseItem.side == Side.INPUT,
                ResponseItem.position == first.c.first,
            ),
        )
    )
    return {response_id: preview(data) for response_id, data in rows}


def preview(item: dict[str, Any]) -> str:
    """An item in a line: a message's text, else its type (and a function call's name)."""
    if item.get("type") == "message":
        content = item.get("content")
        if isinstance(content, str):
            return content[:PREVIEW]
        texts = [part.get("text") or part.get("refusal") or "" for part in content or []]
        return " ".join(text for text in texts if text)[:PREVIEW]
    return " ".join(str(part) for part in (item.get("type"), item.get("name")) if part)[:PREVIEW]


def response_detail(ctx: Context, tenant_id: str, response_id: str) -> dict:
    """Everything about one response, for its timeline: the Response as the API shows it (its output aside),
    the engine's status and times, its internals, stored events and items."""
    with ctx.uow() as uow:
        session = uow.session
        run, echo = db_responses.load(session, tenant_id, response_id)
        given, made = db_responses.items_both(session, run.id)
        return {
            "response": wire.response(run, echo, []) | {"output": None},
            "engine": _engine(run),
            "internals": inspector.internals(ctx, run),
            "events": _numbered(inspector.events(session, run)),
            "input": [wire.public(item) for item in given],
            "output": [wire.public(item) for item in made],
        }


def _engine(run: models.Run) -> dict:
    return {
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.completed_at or run.failed_at or run.cancelled_at,
        "expires_at": run.expires_at,
        "instructions": run.instructions,
    }


def _numbered(events: list[dict]) -> list[dict]:
    """The log's numbers as the stream shows them: `sequence_number` is the log's seq less one."""
    for event in events:
        event["seq"] -= 1
        if "last_seq" in event:
            event["last_seq"] -= 1
    return events


# --- conversations -------------------------------------------------------------------------------------


def list_conversations(ctx: Context, tenant_id: str, *, limit: int, before: str | None = None) -> dict:
    """The tenant's conversations, newest first, each with its item count and first item."""
    with ctx.uow() as uow:
        session = uow.session
        statement = select(Conversation).where(Conversation.tenant_id == tenant_id)
        if before:
            older = db_conversations.load(session, tenant_id, before)
            statement = statement.where(
                or_(
                    Conversation.created_at < older.created_at,
                    and_(Conversation.created_at == older.created_at, Conversation.id < older.id),
                )
            )
        ordered = statement.order_by(Conversation.created_at.desc(), Conversation.id.desc())
        found = list(session.scalars(ordered.limit(limit + 1)))
        page, more = found[:limit], len(found) > limit
        counts, firsts = _item_counts(session, [row.id for row in page])
        data = [
            _conversation(row) | {"items": counts.get(row.id, 0), "preview": firsts.get(row.id)}
            for row in page
        ]
        return {"data": data, "has_more": more}


def _conversation(row: Conversation) -> dict:
    return {"id": row.id, "created_at": row.created_at, "metadata": row.metadata_}


def _item_counts(session: Session, conversation_ids: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Each conversation's item count and its first item in a line."""
    if not conversation_ids:
        return {}, {}
    counted = (
        select(
            ConversationItem.conversation_id,
            func.count().label("counted"),
            func.min(ConversationItem.position).label("first"),
        )
        .where(ConversationItem.conversation_id.in_(conversation_ids))
        .group_by(ConversationItem.conversation_id)
        .subquery()
    )
    rows = session.execute(
        select(ConversationItem.conversation_id, counted.c.counted, ConversationItem.data).join(
            counted,
            and_(
                ConversationItem.conversation_id == counted.c.conversation_id,
                ConversationItem.position == counted.c.first,
            ),
        )
    )
    counts, firsts = {}, {}
    for conversation_id, items, data in rows:
        counts[conversation_id], firsts[conversation_id] = items, preview(data)
    return counts, firsts


def conversation_detail(ctx: Context, tenant_id: str, conversation_id: str) -> dict:
    """One conversation: its items in order (the first MAX_ITEMS) and the responses that used it."""
    with ctx.uow() as uow:
        session = uow.session
        row = db_conversations.load(session, tenant_id, conversation_id)
        items = list(
            session.execute(
                select(ConversationItem.position, ConversationItem.created_at, ConversationItem.data)
                .where(ConversationItem.conversation_id == row.id)
                .order_by(ConversationItem.position)
                .limit(MAX_ITEMS + 1)
            )
        )
        return {
            "conversation": _conversation(row),
            "items": [
                {"position": position, "added_at": added, "item": wire.public(data)}
                for position, added, data in items[:MAX_ITEMS]
            ],
            "has_more": len(items) > MAX_ITEMS,
            "responses": _users(session, tenant_id, row.id),
        }


def _users(session: Session, tenant_id: str, conversation_id: str) -> list[dict]:
    """The responses created with this conversation, oldest first."""
    found = session.execute(
        select(models.Run, Response)
        .join(Response, Response.id == models.Run.id)
        .where(Response.conversation_id == conversation_id, Response.tenant_id == tenant_id)
        .order_by(models.Run.created_us)
        .limit(MAX_USERS)
    ).all()
    previews = _first_inputs(session, [run.id for run, _echo in found])
    return [_response_summary(run, echo) | {"preview": previews.get(run.id)} for run, echo in found]
