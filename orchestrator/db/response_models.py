"""Tables of the Responses and Conversations APIs (sharing `models`' metadata; db/schema.py has them all).

    runs (api = responses) ─┬─ responses (what the Response echoes and the engine does not read)
                            ├─ response_items (its input items, then its output items, in order)
                            └─ run_events (its stream: every event, deltas included, numbered densely)
    conversations ── conversation_items (copies of the items of the responses that used it, in order)

A Response is a run of the engine: the same row leases, fences, numbers its events and is recovered by the
same sweeps as a thread's run; `responses` and `response_items` hold what only the Responses face reads.
Deleting a response deletes its run row, and with it its items and events. A conversation's items are
copies: deleting a response leaves the conversation whole, and deleting a conversation item leaves the
response whole.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db.models import Base, closed_set


class Side(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_ended", "store", "ended_at"),)
    id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True
    )
    store: Mapped[bool] = mapped_column(Boolean)
    background: Mapped[bool] = mapped_column(Boolean)
    # The request's fields the Response shows as they were given (text, reasoning, include, truncation,
    # max_output_tokens, user, …): the engine reads its own copy of what it needs from the run row.
    echo: Mapped[dict[str, Any]]
    # When the response ended; an unstored one is deleted by the sweep some time after (services).
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    # The container its code_interpreter runs in (the tool's, or one made or found for `auto` at create);
    # no foreign key: a container deleted or expired since fails the code's call, not the response row.
    container_id: Mapped[str | None] = mapped_column(String(64))


class ResponseItem(Base):
    """One input or output item of a response, as the wire shows it (`data`), in order within its side.
    Output items are written by the worker as the model produces them: added `in_progress`, then done."""

    __tablename__ = "response_items"
    # An `item_reference` names an item by its id alone.
    __table_args__ = (Index("ix_response_items_item", "tenant_id", "item_id"),)
    response_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    side: Mapped[Side] = closed_set(Side, "item_side", primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_tenant", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    # The position the next appended item takes (appends lock the row and advance it).
    next_position: Mapped[int] = mapped_column(Integer, default=0)


class ConversationItem(Base):
    __tablename__ = "conversation_items"
    __table_args__ = (
        UniqueConstraint("conversation_id", "item_id", name="uq_conversation_items_item"),
        Index("ix_conversation_items_item", "tenant_id", "item_id"),  # an `item_reference`'s lookup
    )
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[int] = mapped_column(BigInteger)
