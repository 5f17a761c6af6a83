from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AfterQuery(BaseModel):
    """A forward-only cursor (`after`), as conversation items and a response's input items page.
    Query strings arrive as text; these are coerced, unlike JSON bodies."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


class ListQuery(AfterQuery):
    """The Assistants lists' cursors: `after` and `before`."""

    before: str | None = None
