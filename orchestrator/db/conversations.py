"""The conversation store: loading a tenant's conversation, appending items to it in order, and reading them
back; shared by the Conversations API's use cases and the engine, which appends a response's input and output
items from the transaction that ends the response.

Appends take the conversation's row lock (FOR NO KEY UPDATE on Postgres: it serialises appenders without
blocking the item inserts that reference the row; SQLite has one writer anyway) and advance
`next_position` under it, so concurrent appends never share or interleave positions. An item whose id the
conversation already holds is not appended twice (the unique (conversation_id, item_id) index is the last
word): a redone append changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from orchestrator.db.response_models import Conversation, ConversationItem, ResponseItem
from orchestrator.domain.errors import InvalidRequest, NotFound, not_found


def load(session: Session, tenant_id: str, conversation_id: str, *, for_update: bool = False) -> Conversation:
    """The tenant's conversation or 404 (another tenant's reads exactly like a missing one). `for_update`
    takes the row lock that appends hold."""
    statement = select(Conversation).where(
        Conversation.id == conversation_id, Conversation.tenant_id == tenant_id
    )
    if for_update:
        statement = _locking(statement)
    row = session.scalar(statement)
    if row is None:
        raise not_found("conversation", conversation_id)
    return row


def _locking(statement):
    # populate_existing: a row this session read before the lock is read again under it (the position
    # it holds may have moved since).
    return statement.with_for_update(key_share=True).execution_options(populate_existing=True)


def append(session: Session, conversation_id: str, items: list[dict[str, Any]], now: int) -> list[dict]:
    """Append copies of `items`, in order, to the conversation; the items appended are returned. Items
    whose id it already holds are skipped. A conversation deleted meanwhile takes nothing (the response
    that used it still ends)."""
    statement = select(Conversation).where(Conversation.id == conversation_id)
    conversation = session.scalar(_locking(statement))
    if conversation is None:
        return []
    held = held_ids(session, conversation_id, [item["id"] for item in items])
    fresh = []
    for item in items:
        if item["id"] not in held:
            held.add(item["id"])
            fresh.append(item)
    insert_items(session, conversation, fresh, now)
    return fresh


def insert_items(session: Session, conversation: Conversation, items: list[dict[str, Any]], now: int) -> None:
    """Insert `items` after the conversation's last; its row lock must be held and no id already in it."""
    if not items:
        return
    start = conversation.next_position
    rows = [
        {
            "conversation_id": conversation.id,
            "position": start + offset,
            "tenant_id": conversation.tenant_id,
            "item_id": item["id"],
            "type": item["type"],
            "data": item,
            "created_at": now,
        }
        for offset, item in enumerate(items)
    ]
    session.execute(insert(ConversationItem), rows)
    conversation.next_position = start + len(items)
    session.flush()


def held_ids(session: Session, conversation_id: str, item_ids: Iterable[str]) -> set[str]:
    """Which of `item_ids` the conversation holds."""
    wanted = set(item_ids)
    if not wanted:
        return set()
    found = session.scalars(
        select(ConversationItem.item_id).where(
            ConversationItem.conversation_id == conversation_id, ConversationItem.item_id.in_(wanted)
        )
    )
    return set(found)


def items_of(session: Session, tenant_id: str, conversation_id: str) -> list[dict[str, Any]]:
    """Every item of the tenant's conversation, in order (what a response using it reads first); 404 if
    the conversation is not the tenant's."""
    load(session, tenant_id, conversation_id)
    rows = session.scalars(
        select(ConversationItem.data)
        .where(ConversationItem.conversation_id == conversation_id)
        .order_by(ConversationItem.position)
    )
    return list(rows)


def page(
    session: Session, conversation_id: str, *, limit: int, order: str, after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """One page of items by position (`after` an item id of this conversation), and whether more follow."""
    position = ConversationItem.position
    conditions = [ConversationItem.conversation_id == conversation_id]
    ascending = order == "asc"
    if after:
        cursor = _position(session, conversation_id, after)
        conditions.append(position > cursor if ascending else position < cursor)
    rows = list(
        session.scalars(
            select(ConversationItem.data)
            .where(*conditions)
            .order_by(position.asc() if ascending else position.desc())
            .limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def _position(session: Session, conversation_id: str, item_id: str) -> int:
    found = session.scalar(
        select(ConversationItem.position).where(
            ConversationItem.conversation_id == conversation_id, ConversationItem.item_id == item_id
        )
    )
    if found is None:
        raise InvalidRequest(
            f"Invalid 'after': no item with id '{item_id}' in this conversation.",
            param="after",
            code="invalid_value",
        )
    return found


def item(session: Session, conversation_id: str, item_id: str) -> dict[str, Any] | None:
    return session.scalar(
        select(ConversationItem.data).where(
            ConversationItem.conversation_id == conversation_id, ConversationItem.item_id == item_id
        )
    )


def delete_item(session: Session, conversation_id: str, item_id: str) -> bool:
    result = session.execute(
        delete(ConversationItem).where(
            ConversationItem.conversation_id == conversation_id, ConversationItem.item_id == item_id
        )
    )
    return result.rowcount == 1


def delete_conversation(session: Session, tenant_id: str, conversation_id: str) -> None:
    """The conversation and its items (ON DELETE CASCADE); responses that used it keep their own items."""
    result = session.execute(
        delete(Conversation).where(Conversation.id == conversation_id, Conversation.tenant_id == tenant_id)
    )
    if result.rowcount != 1:
        raise not_found("conversation", conversation_id)


def resolve_references(
    session: Session, tenant_id: str, items: list[dict[str, Any]], param: str
) -> list[dict[str, Any]]:
    """`item_reference` items made into copies of the tenant's items they name (a response's, or a
    conversation's); a name the tenant holds no item under is a 404 naming the reference."""
    wanted = {item["id"] for item in items if item["type"] == "item_reference"}
    if not wanted:
        return items
    found: dict[str, dict[str, Any]] = {}
    for model in (ConversationItem, ResponseItem):
        missing = wanted - found.keys()
        if missing:
            rows = session.execute(
                select(model.item_id, model.data).where(
                    model.tenant_id == tenant_id, model.item_id.in_(missing)
                )
            )
            for item_id, data in rows:
                found.setdefault(item_id, data)
    for index, item in enumerate(items):
        if item["type"] == "item_reference" and item["id"] not in found:
            raise NotFound(f"Item with id '{item['id']}' not found.", param=f"{param}[{index}].id")
    return [found[item["id"]] if item["type"] == "item_reference" else item for item in items]
