"""Files: the multipart upload's fields and the list query (contract §6.2)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.domain.retrieval import UPLOAD_PURPOSES
from orchestrator.schemas.common import Strict

MAX_FILE_LIST = 10_000

UploadPurpose = Literal[UPLOAD_PURPOSES]  # type: ignore[valid-type]


class FileExpiresAfter(Strict):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=3600, le=2_592_000)]


class FileUpload(Strict):
    """The form fields besides the file itself (multipart values arrive as text; `seconds` is parsed)."""

    purpose: UploadPurpose
    expires_after: FileExpiresAfter | None = None


class FileListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=MAX_FILE_LIST, ge=1, le=MAX_FILE_LIST)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    purpose: str | None = None
