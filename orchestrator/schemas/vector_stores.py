"""Vector stores, their files, file batches and search (contract §6.2; the SDK's params types)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from orchestrator.domain.retrieval import MAX_BATCH_FILES
from orchestrator.schemas.common import (
    METADATA_MAX_KEY,
    METADATA_MAX_PAIRS,
    ChunkingStrategy,
    Strict,
    WithMetadata,
    rule_error,
)
from orchestrator.schemas.pagination import ListQuery

Name = Annotated[str, Field(max_length=256)]
Description = Annotated[str, Field(max_length=512)]
AttributeValue = Annotated[str, Field(max_length=512)] | bool | int | float


def _attribute_limits(value: dict[str, Any]) -> dict[str, Any]:
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


# Like metadata, but values may also be numbers and booleans (filters compare them).
Attributes = Annotated[dict[str, AttributeValue], AfterValidator(_attribute_limits)] | None


class StoreExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class CreateVectorStore(WithMetadata):
    name: Name | None = None
    description: Description | None = None
    file_ids: Annotated[list[str], Field(max_length=500)] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: StoreExpiresAfter | None = None


class ModifyVectorStore(WithMetadata):
    name: Name | None = None
    expires_after: StoreExpiresAfter | None = None


class CreateStoreFile(Strict):
    file_id: str
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategy | None = None


class UpdateStoreFile(Strict):
    attributes: Attributes


class BatchFile(CreateStoreFile):
    pass


BatchIds = Annotated[list[str], Field(min_length=1, max_length=MAX_BATCH_FILES)]


class CreateFileBatch(Strict):
    file_ids: BatchIds | None = None
    files: Annotated[list[BatchFile], Field(min_length=1, max_length=MAX_BATCH_FILES)] | None = None
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategy | None = None

    @model_validator(mode="after")
    def _ids_or_files(self):
        if (self.file_ids is None) == (self.files is None):
            raise rule_error("invalid_value", "exactly one of 'file_ids' or 'files' must be provided")
        return self


class StoreFileListQuery(ListQuery):
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None


class ComparisonFilter(Strict):
    key: str
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    value: str | bool | int | float | list[str | int | float]


class CompoundFilter(Strict):
    type: Literal["and", "or"]
    filters: Annotated[list[Filter], Field(min_length=1)]


def _filter_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "compound" if kind in ("and", "or") else "comparison"


Filter = Annotated[
    Annotated[ComparisonFilter, Tag("comparison")] | Annotated[CompoundFilter, Tag("compound")],
    Discriminator(_filter_kind),
]
CompoundFilter.model_rebuild()


class SearchRanking(Strict):
    ranker: Literal["none", "auto", "default-2024-11-15", "default_2024_08_21"] | None = None
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class SearchVectorStore(Strict):
    query: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1, max_length=10)]
    filters: Filter | None = None
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    ranking_options: SearchRanking | None = None
    rewrite_query: bool | None = None
