from __future__ import annotations

from orchestrator.schemas.common import CreateMessage, WithMetadata
from orchestrator.schemas.pagination import ListQuery

__all__ = ["CreateMessage", "MessageListQuery", "ModifyMessage"]


class ModifyMessage(WithMetadata):
    pass


class MessageListQuery(ListQuery):
    run_id: str | None = None
