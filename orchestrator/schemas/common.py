"""Shapes shared by several resources: metadata, tools, tool resources, response formats, content."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.domain.errors import InvalidRequest


class Strict(BaseModel):
    """Unknown keys are rejected and no type is coerced, like the OpenAI API."""

    model_config = ConfigDict(extra="forbid", strict=True)


METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512


def rule_error(code: str, sentence: str, **context: Any) -> PydanticCustomError:
    """A domain rule broken inside a request model. `sentence` follows "Invalid '<param>': " and the
    code is the OpenAI error code; api/validation.py words it with the caller's path to the value."""
    return PydanticCustomError(code, sentence, {"rule": True, **context})


def _metadata_limits(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_PAIRS:
        raise rule_error(
            "object_above_max_properties",
            "too many properties. Expected an object with at most {max} properties, "
            "but got an object with {count} properties instead.",
            max=METADATA_MAX_PAIRS,
            count=len(value),
        )
    for key in value:
        if len(key) > METADATA_MAX_KEY:
            raise rule_error(
                "property_name_above_max_length",
                "property name too long",
                key=key,
                max=METADATA_MAX_KEY,
                length=len(key),
            )
    return value


MetadataValue = Annotated[str, Field(max_length=METADATA_MAX_VALUE)]
# At most 16 pairs, keys at most 64 characters, values at most 512 (contract §2); null allowed.
Metadata = Annotated[dict[str, MetadataValue], AfterValidator(_metadata_limits)] | None


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """The metadata limits outside a request model (raises InvalidRequest with the §5 wording)."""
    if value is None:
        return value
    if len(value) > METADATA_MAX_PAIRS:
        raise InvalidRequest(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise InvalidRequest(
                f"Invalid property name in 'metadata': '{key}' is too long. Expected a string with "
                f"maximum length 64, but got a string with length {len(key)} instead.",
                param=f"metadata.{key}",
                code="property_name_above_max_length",
            )
        if len(item) > METADATA_MAX_VALUE:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length 512, "
                f"but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return value


# A model name: never empty (an empty one would only fail later, in a run, as an unknown model).
ModelName = Annotated[str, Field(min_length=1, max_length=256)]


class WithMetadata(Strict):
    metadata: Metadata = None


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
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)]


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

    @model_validator(mode="after")
    def _overlap_at_most_half(self):
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise rule_error(
                "invalid_value",
                "'chunk_overlap_tokens' must not exceed half of 'max_chunk_size_tokens' ({half}), "
                "but got {overlap}",
                half=self.max_chunk_size_tokens // 2,
                overlap=self.chunk_overlap_tokens,
            )
        return self


class ChunkingStrategy(Strict):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static_goes_with_its_type(self):
        if (self.type == "static") != (self.static is not None):
            raise rule_error(
                "invalid_value", "'static' is required when 'type' is 'static', and allowed only then"
            )
        return self


class VectorStoreHelper(Strict):
    file_ids: list[str] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


class FileSearchIds(Strict):
    vector_store_ids: Annotated[list[str], Field(max_length=1)] | None = None


class FileSearchResources(FileSearchIds):
    vector_stores: Annotated[list[VectorStoreHelper], Field(max_length=1)] | None = None

    @model_validator(mode="after")
    def _ids_or_helper(self):
        if self.vector_store_ids is not None and self.vector_stores is not None:
            raise rule_error(
                "invalid_value", "only one of 'vector_store_ids' or 'vector_stores' may be provided"
            )
        return self


class ToolResources(Strict):
    """Tool resources on create (assistant, thread): the `vector_stores` helper is allowed."""

    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class ToolResourceIds(Strict):
    """Tool resources on modify: ids only (contract §2.1, §2.2)."""

    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchIds | None = None


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

# Float bounds, so a violation is worded as a "decimal" (contract §5.2).
Temperature = Annotated[float, Field(ge=0.0, le=2.0)] | None
TopP = Annotated[float, Field(ge=0.0, le=1.0)] | None
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
