"""Request bodies of the Responses API (contract §3): every field the SDK sends is accepted; those the
engine has no use for are kept and shown on the Response as given."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from orchestrator.domain.includes import INCLUDABLE
from orchestrator.schemas.common import Metadata, ModelName, Strict, Temperature, TopP, rule_error
from orchestrator.schemas.vector_stores import Filter

Includable = Literal[INCLUDABLE]  # every value the SDK may send (domain/includes.py)


class FunctionTool(Strict):
    type: Literal["function"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class RankingOptions(Strict):
    ranker: Literal["auto", "default-2024-11-15", "default_2024_08_21", "none"] | None = None
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    hybrid_search: dict[str, Any] | None = None


class FileSearchTool(Strict):
    type: Literal["file_search"]
    vector_store_ids: Annotated[list[str], Field(min_length=1, max_length=2)]
    filters: Filter | None = None
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    ranking_options: RankingOptions | None = None


class AutoContainer(Strict):
    type: Literal["auto"]
    file_ids: Annotated[list[str], Field(max_length=50)] | None = None
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: dict[str, Any] | None = None


class CodeInterpreterTool(Strict):
    type: Literal["code_interpreter"]
    container: str | AutoContainer


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


class FunctionChoice(Strict):
    type: Literal["function"]
    name: str


class HostedChoice(Strict):
    type: Literal["file_search", "code_interpreter"]


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice | HostedChoice


class TextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")] | None = None
    schema_: Annotated[dict[str, Any] | None, Field(alias="schema")] = None
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _a_schema_has_a_name_and_a_schema(self):
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise rule_error("invalid_value", "'name' and 'schema' are required for a json_schema format")
        return self


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ConversationRef(Strict):
    id: str


class WithHistory(Strict):
    """What a request carries on from: the previous responses' chain, or a conversation; not both."""

    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None

    @model_validator(mode="after")
    def _one_source_of_history(self):
        if self.previous_response_id is not None and self.conversation is not None:
            raise rule_error(
                "invalid_value", "'previous_response_id' cannot be used in conjunction with 'conversation'"
            )
        return self

    @property
    def conversation_id(self) -> str | None:
        conversation = self.conversation
        return conversation.id if isinstance(conversation, ConversationRef) else conversation


class CreateResponse(WithHistory):
    model: ModelName
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    include: list[Includable] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    max_output_tokens: Annotated[int, Field(ge=16, le=2**31 - 1)] | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata = None
    temperature: Temperature = None
    top_p: TopP = None
    # Accepted and echoed (or ignored): none of these changes what the engine does.
    reasoning: dict[str, Any] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    moderation: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    access_programs: dict[str, Any] | None = None


class CountInputTokens(WithHistory):
    model: ModelName | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    text: TextConfig | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    parallel_tool_calls: bool | None = None
