"""Query-string parsing for list endpoints."""

from __future__ import annotations

from flask import request

from orchestrator.api.http import validate
from orchestrator.schemas.pagination import ListQuery


def list_query() -> dict:
    args = {key: request.args[key] for key in ("limit", "order", "after", "before") if key in request.args}
    query = validate(ListQuery, args)
    return query.model_dump()


def include() -> list[str]:
    """`include[]=…` as the SDK sends it (plain `include` accepted too)."""
    return request.args.getlist("include[]") + request.args.getlist("include")
