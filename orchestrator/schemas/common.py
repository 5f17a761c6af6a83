"""Shapes shared by several resources: metadata, tools, tool resources, response formats, content."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from orchestrator.domain.errors import InvalidRequest


class Strict(BaseModel):
    """Unknown keys are rejected and no type is coerced, like the OpenAI API."""

    model_config = ConfigDict(extra="forbid", strict=True)


Metadata = dict[str, str] | None


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return value
    if len(value) > 16:
        raise InvalidRequest(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"Invalid property name in 'metadata': '{key}' is too long. Expected a string with "
                f"maximum length 64, but got a string with length {len(key)} instead.",
                param=f"metadata.{key}",
                code="property_name_above_max_length",
            )
        if len(item) > 512:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length 512, "
                f"but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return value


class WithMetadata(Strict):
    metadata: Metadata = None

    @field_validator("metadata", mode="after")
    @classmethod
    def _metadata_limits(cls, value):
        return check_metadata(value)


FunctionName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class FunctionDefinition(Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(Strict):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: Annotated[float, Field(ge=0, le=1)]


class FileSearchOptions(Strict):
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    ranking_options: RankingOptions | None = None


class FileSearchTool(Strict):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(Strict):
    type: Literal["code_interpreter"]


Tool = Annotated[FunctionTool | FileSearchTool | CodeInterpreterTool, Field(discriminator="type")]


class CodeInterpreterResources(Strict):
    file_ids: Annotated[list[str], Field(max_length=20)] | None = None


class StaticChunking(Strict):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0)]


class ChunkingStrategy(Strict):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None


class VectorStoreHelper(Strict):
    file_ids: list[str] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


class FileSearchResources(Strict):
    vector_store_ids: Annotated[list[str], Field(max_length=1)] | None = None
    vector_stores: Annotated[list[VectorStoreHelper], Field(max_length=1)] | None = None


class ToolResources(Strict):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class JsonSchemaFormat(Strict):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormatText(Strict):
    type: Literal["text"]


class ResponseFormatJsonObject(Strict):
    type: Literal["json_object"]


class ResponseFormatJsonSchema(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
    | None
)

Temperature = Annotated[float, Field(ge=0, le=2)] | None
TopP = Annotated[float, Field(ge=0, le=1)] | None
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None


class ImageFileRef(Strict):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlRef(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageFilePart(Strict):
    type: Literal["image_file"]
    image_file: ImageFileRef


class ImageUrlPart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrlRef


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class AttachmentTool(Strict):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Strict):
    file_id: str
    tools: list[AttachmentTool]


class CreateMessage(WithMetadata):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None


def dump(model: BaseModel | None) -> Any:
    """The JSON form of a validated sub-model as the API echoes it (unset optional keys left out)."""
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
