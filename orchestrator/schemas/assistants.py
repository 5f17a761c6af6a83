from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.schemas.common import (
    ModelName,
    ReasoningEffort,
    ResponseFormat,
    Temperature,
    Tool,
    ToolResourceIds,
    ToolResources,
    TopP,
    WithMetadata,
)

Name = Annotated[str, Field(max_length=256)] | None
Description = Annotated[str, Field(max_length=512)] | None
Instructions = Annotated[str, Field(max_length=256_000)] | None
Tools = Annotated[list[Tool], Field(max_length=128)] | None


class CreateAssistant(WithMetadata):
    model: ModelName
    name: Name = None
    description: Description = None
    instructions: Instructions = None
    reasoning_effort: ReasoningEffort = None
    tools: Tools = None
    tool_resources: ToolResources | None = None
    temperature: Temperature = None
    top_p: TopP = None
    response_format: ResponseFormat = None


class ModifyAssistant(CreateAssistant):
    model: ModelName | None = None
    tool_resources: ToolResourceIds | None = None
