from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from orchestrator.schemas.common import (
    CreateMessage,
    ModelName,
    ReasoningEffort,
    ResponseFormat,
    Strict,
    Temperature,
    Tool,
    ToolResources,
    TopP,
    WithMetadata,
)

TokenBudget = Annotated[int, Field(ge=256, le=2**31 - 1)] | None  # stored in an INTEGER column
RunTools = Annotated[list[Tool], Field(max_length=20)] | None


class TruncationStrategy(Strict):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function", "code_interpreter", "file_search"]
    function: NamedFunction | None = None


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice | None


class RunOptions(WithMetadata):
    """What a run may override of its assistant (shared by create-run and create-thread-and-run)."""

    assistant_id: str
    model: ModelName | None = None
    instructions: str | None = None
    tools: RunTools = None
    temperature: Temperature = None
    top_p: TopP = None
    stream: bool | None = None
    max_prompt_tokens: TokenBudget = None
    max_completion_tokens: TokenBudget = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat = None


class CreateRun(RunOptions):
    reasoning_effort: ReasoningEffort = None
    additional_instructions: str | None = None
    additional_messages: list[CreateMessage] | None = None


class NewThread(WithMetadata):
    messages: list[CreateMessage] | None = None
    tool_resources: ToolResources | None = None


class CreateThreadAndRun(RunOptions):
    thread: NewThread | None = None
    tool_resources: ToolResources | None = None


class ModifyRun(WithMetadata):
    pass


class ToolOutput(Strict):
    tool_call_id: str
    output: str


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


def as_json(value: Any) -> Any:
    """A validated sub-model (or literal) as stored and echoed."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)
