"""Conversations: create (with initial items), retrieve, update (metadata), delete; and their items: add,
list, retrieve, delete (contract §1). Each use case is one unit of work.

A conversation's items are its own copies (db/conversations.py): items a client adds are made whole by
domain/response_items.normalize (ids, statuses; `item_reference`s become copies of the items they name),
and the engine appends a response's input and output items when the response ends. Deleting the
conversation deletes its items; the responses that used it keep theirs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import conversations as store
from orchestrator.db.pages import listing
from orchestrator.db.response_models import Conversation
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.ids import new_id
from orchestrator.domain.includes import shown
from orchestrator.domain.response_items import normalize
from orchestrator.schemas.conversations import CreateConversation, CreateItems, UpdateConversation

Include = frozenset[str] | set[str] | tuple[str, ...]


def create(ctx: Context, tenant_id: str, body: CreateConversation) -> dict:
    items = normalize(body.items, param="items") if body.items else []
    with ctx.uow() as uow:
        now = ctx.timestamp()
        row = Conversation(
            id=new_id("conv"),
            tenant_id=tenant_id,
            created_at=now,
            metadata_=body.metadata or {},
            next_position=0,
        )
        uow.session.add(row)
        uow.session.flush()
        _add(uow.session, row, items, now)
        uow.commit()
        return conversation(row)


def get(ctx: Context, tenant_id: str, conversation_id: str) -> dict:
    with ctx.uow() as uow:
        return conversation(store.load(uow.session, tenant_id, conversation_id))


def update(ctx: Context, tenant_id: str, conversation_id: str, body: UpdateConversation) -> dict:
    with ctx.uow() as uow:
        row = store.load(uow.session, tenant_id, conversation_id, for_update=True)
        row.metadata_ = body.metadata or {}
        uow.commit()
        return conversation(row)


def delete(ctx: Context, tenant_id: str, conversation_id: str) -> dict:
    with ctx.uow() as uow:
        store.delete_conversation(uow.session, tenant_id, conversation_id)
        uow.commit()
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


def add_items(
    ctx: Context, tenant_id: str, conversation_id: str, body: CreateItems, include: Include = ()
) -> dict:
    """Append the items after the conversation's last; the answer lists them (ConversationItemList)."""
    items = normalize(body.items, param="items")
    with ctx.uow() as uow:
        row = store.load(uow.session, tenant_id, conversation_id, for_update=True)
        added = _add(uow.session, row, items, ctx.timestamp())
        uow.commit()
        return listing([shown(item, include) for item in added], has_more=False)


def list_items(
    ctx: Context,
    tenant_id: str,
    conversation_id: str,
    *,
    limit: int,
    order: str,
    after: str | None,
    include: Include = (),
) -> dict:
    with ctx.uow() as uow:
        store.load(uow.session, tenant_id, conversation_id)
        data, has_more = store.page(uow.session, conversation_id, limit=limit, order=order, after=after)
        return listing([shown(item, include) for item in data], has_more=has_more)


def get_item(ctx: Context, tenant_id: str, conversation_id: str, item_id: str, include: Include = ()) -> dict:
    with ctx.uow() as uow:
        store.load(uow.session, tenant_id, conversation_id)
        found = store.item(uow.session, conversation_id, item_id)
        if found is None:
            raise not_found("item", item_id)
        return shown(found, include)


def delete_item(ctx: Context, tenant_id: str, conversation_id: str, item_id: str) -> dict:
    """The item leaves the conversation; the answer is the conversation (items.py: delete)."""
    with ctx.uow() as uow:
        row = store.load(uow.session, tenant_id, conversation_id)
        if not store.delete_item(uow.session, conversation_id, item_id):
            raise not_found("item", item_id)
        uow.commit()
        return conversation(row)


def _add(session: Session, row: Conversation, items: list[dict[str, Any]], now: int) -> list[dict]:
    items = store.resolve_references(session, row.tenant_id, items, "items")
    _refuse_repeated_ids(session, row.id, items)
    store.insert_items(session, row, items, now)
    return items


def _refuse_repeated_ids(session: Session, conversation_id: str, items: list[dict[str, Any]]) -> None:
    """A client's item may carry an id (copied from an output); one id names one item of a conversation."""
    held = store.held_ids(session, conversation_id, [item["id"] for item in items])
    for index, item in enumerate(items):
        if item["id"] in held:
            raise InvalidRequest(
                f"Invalid 'items[{index}].id': the conversation already has an item with id '{item['id']}'.",
                param=f"items[{index}].id",
                code="invalid_value",
            )
        held.add(item["id"])


# --- the objects as the wire shows them (types/conversations/) ----------------------------------------


def conversation(row: Conversation) -> dict:
    return {"id": row.id, "object": "conversation", "created_at": row.created_at, "metadata": row.metadata_}
