from __future__ import annotations

from orchestrator.schemas.common import CreateMessage, ToolResourceIds, ToolResources, WithMetadata


class CreateThread(WithMetadata):
    messages: list[CreateMessage] | None = None
    tool_resources: ToolResources | None = None


class ModifyThread(WithMetadata):
    tool_resources: ToolResourceIds | None = None
