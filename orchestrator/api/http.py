"""Request parsing and response helpers shared by every view, plus the route registry behind /openapi.json."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from orchestrator.api.validation import json_type, reject_unstorable_text, translate
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.ids import MAX_ID_LENGTH, has_prefix, plain_id

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RouteDoc:
    method: str
    rule: str
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    returns: str
    # The kind of object answered ("thread.run", …: openapi_objects.KINDS); None: inferred from the rule.
    object: str | None = None
    # The schema of each event when the route streams (a run's events unless said otherwise).
    events: str = "RunStreamEvent"
    # Whether an Idempotency-Key is honoured (POSTs of durable work); relayed model calls store nothing.
    idempotent: bool = True


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
    object: str | None = None,  # noqa: A002 - the API's own word for an object's kind
    events: str = "RunStreamEvent",
    idempotent: bool = True,
) -> Callable:
    """Register a view on `bp` and describe it for /openapi.json from the same pydantic models.

    `returns` is "object", "list", "deleted" or "stream" (the object, or SSE when `stream` is true; a
    route whose rule ends in /events is SSE only); `object` names the kind when the rule does not tell
    it (see openapi._kind); unknown kinds are documented as plain objects."""

    def decorator(view: Callable) -> Callable:
        ROUTES.append(RouteDoc(method, rule, summary, body, query, returns, object, events, idempotent))
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
        return view

    return decorator


NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us.)"
)


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body (cancel, the SDK's bare POSTs) is `{}`.

    Reading goes through Werkzeug's limited stream, so MAX_CONTENT_LENGTH answers 413 for a declared
    length and for a chunked body alike (a chunked body must stay below the limit)."""
    raw = read_body()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # Werkzeug stops a chunked body at the limit without complaint; asking for one byte more makes
        # its limited stream raise 413 instead of handing a truncated body to the JSON parser.
        request.stream.read(1)
        raise RequestEntityTooLarge()
    if not raw.strip():
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"Invalid type for request body: expected an object, but got {json_type(data)} instead.",
            code="invalid_type",
        )
    reject_unstorable_text(data)
    return data


def read_body() -> bytes:
    """The raw request body (read once, then cached)."""
    try:
        return request.get_data(cache=True)
    except OSError as error:
        # The client went away mid-body, or sent a chunked body that cannot be decoded (werkzeug's
        # server; under gunicorn the body deadline turns its parse errors into InvalidRequest).
        raise unreadable(str(error)) from None


def unreadable(detail: str) -> InvalidRequest:
    """The request body could not be read as HTTP (a malformed chunked encoding, a body cut short)."""
    return InvalidRequest(f"The request body could not be read: {detail}", code="invalid_body")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity (Postgres' jsonb refuses them), no overflowing decimals."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise InvalidRequest(NOT_JSON) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a double")
    return value


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
    """An object id from a path or query: the right prefix, plain characters, at most 64 long (§5.1)."""
    if not has_prefix(value, prefix):
        raise InvalidRequest(
            f"Invalid '{param}': '{_shown(value)}'. Expected an ID that begins with '{prefix}'.",
            param=param,
            code="invalid_value",
        )
    if not plain_id(value):
        raise InvalidRequest(
            f"Invalid '{param}': '{_shown(value)}'. Expected an ID that begins with '{prefix}' followed by "
            f"letters, digits, '-' or '_', at most {MAX_ID_LENGTH} characters in all.",
            param=param,
            code="invalid_value",
        )
    return value


def check_plain_id(value: str, param: str) -> str:
    """An id of any prefix (conversation items keep the ids of the items they copy): plain characters, at
    most 64 long."""
    if not plain_id(value):
        raise InvalidRequest(
            f"Invalid '{param}': '{_shown(value)}'. Expected an ID of letters, digits, '-' or '_', at most "
            f"{MAX_ID_LENGTH} characters.",
            param=param,
            code="invalid_value",
        )
    return value


def object_id(value: str, prefix: str, kind: str) -> str:
    """An object id from a path whose every unknown value, whatever its shape, is a 404, as the hosted API
    answers for assistants (`GET /v1/assistants/invalid-assistant-id`): a malformed one is not looked up."""
    if not has_prefix(value, prefix) or not plain_id(value):
        raise not_found(kind, _shown(value))
    return value


def _shown(value: str, limit: int = 80) -> str:
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def ok(payload: Any, *, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    response = Response(body, status=200, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
