"""Query-string parsing for list endpoints."""

from __future__ import annotations

from flask import request

from orchestrator.api.http import validate
from orchestrator.api.validation import check_text, invalid_value
from orchestrator.schemas.pagination import AfterQuery, ListQuery


def list_query(model: type[AfterQuery] = ListQuery) -> dict:
    """`limit`, `order`, `after`, `before` (plus the model's own filters), validated; others ignored
    (the Azure client adds `api-version` to every request)."""
    args = {}
    for name in model.model_fields:
        if name in request.args:
            args[name] = request.args[name]
            check_text(args[name], name)
    return validate(model, args).model_dump()


# The one value the contract knows (§4: run steps, and create-run's query).
INCLUDABLE = ("step_details.tool_calls[*].file_search.results[*].content",)


def include(allowed: tuple[str, ...] = INCLUDABLE) -> list[str]:
    """`include[]=…` as the SDK sends it (plain `include` accepted too); only the values the contract
    knows (`allowed`: the run steps' one by default)."""
    values = request.args.getlist("include[]") + request.args.getlist("include")
    for value in values:
        check_text(value, "include")
        if value not in allowed:
            raise invalid_value("include", value, list(allowed))
    return values
