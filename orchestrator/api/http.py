"""Request parsing and response helpers shared by every view, plus the route registry behind /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError

from orchestrator.api.validation import reject_unstorable_text, translate
from orchestrator.domain.errors import InvalidRequest
from orchestrator.domain.ids import has_prefix

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RouteDoc:
    method: str
    rule: str
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    returns: str


ROUTES: list[RouteDoc] = []


def route(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    returns: str = "object",
) -> Callable:
    """Register a view on `bp` and describe it for /openapi.json from the same pydantic models."""

    def decorator(view: Callable) -> Callable:
        ROUTES.append(RouteDoc(method, rule, summary, body, query, returns))
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
        return view

    return decorator


def json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON. If you have trouble figuring out how to fix this, please contact us.)"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"Invalid type for request body: expected an object, but got {type(data).__name__} instead.",
            code="invalid_type",
        )
    reject_unstorable_text(data)
    return data


def parse_body(model: type[M]) -> M:
    data = json_body()
    return validate(model, data)


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise translate(error, data) from None


def fields_set(model: BaseModel) -> set[str]:
    """Keys the caller sent with a non-null value (null means "leave as is / use the default")."""
    return {name for name in model.model_fields_set if getattr(model, name) is not None}


def check_id(value: str, prefix: str, param: str) -> str:
    if not has_prefix(value, prefix) or len(value) > 64:
        raise InvalidRequest(
            f"Invalid '{param}': '{value}'. Expected an ID that begins with '{prefix}'.",
            param=param,
            code="invalid_value",
        )
    return value


def ok(payload: Any, *, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    response = Response(body, status=200, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
