"""Request bodies and queries of the Conversations API (contract §1, §10). Items are checked whole by
domain/response_items.normalize in the use cases; here only their number and that each is an object."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from orchestrator.schemas.common import Metadata, Strict, WithMetadata
from orchestrator.schemas.pagination import AfterQuery

MAX_ITEMS = 20

Items = Annotated[list[dict[str, Any]], Field(max_length=MAX_ITEMS)]


class CreateConversation(WithMetadata):
    items: Items | None = None
    safety_identifier: str | None = None  # accepted and not kept (nothing here monitors abuse)


class UpdateConversation(Strict):
    # Required, and null clears it (the SDK always sends it: conversation_update_params.py).
    metadata: Metadata


class CreateItems(Strict):
    items: Items


class ItemListQuery(AfterQuery):
    """The items' cursor is an item id (`after`); there is no `before` (items.py: list). `include[]` is
    read by the route (api/query.include)."""
