"""The Responses API's routes (contract §1): create (plain, streamed, background), retrieve (JSON, or the
stream replayed from any point), delete, cancel, input items, input token counts."""

from __future__ import annotations

import re

from flask import Blueprint, request

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import ok, parse_body, route
from orchestrator.api.query import include, list_query
from orchestrator.api.sse import response_stream, subscription
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.includes import INCLUDABLE
from orchestrator.schemas.pagination import AfterQuery
from orchestrator.schemas.responses import CountInputTokens, CreateResponse
from orchestrator.services import responses

bp = Blueprint("responses", __name__)

_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,59}")
MAX_CURSOR = 2**31 - 2


def _response_id(value: str) -> str:
    """An id that cannot be a response's is simply not found (as the hosted API answers)."""
    if not _ID.fullmatch(value):
        raise not_found("response", value[:80])
    return value


@route(
    bp,
    "/responses",
    "POST",
    summary="Create a response",
    body=CreateResponse,
    returns="stream",
    events="ResponseStreamEvent",
)
def create_response():
    body = parse_body(CreateResponse)
    waits = not body.stream and not body.background
    with subscription(body.stream or waits) as opened:
        accepted = responses.create(ctx(), tenant(), body, watch=opened)
    response_id = accepted.run["id"]
    if body.stream:
        return response_stream(response_id, accepted.cursor, opened, accepted.events)
    if waits:
        try:
            responses.wait(ctx(), response_id, inbox=opened.inbox, first=accepted.events)
        finally:
            opened.close()
        return ok(responses.final(ctx(), tenant(), response_id))
    return ok(accepted.run)


@route(bp, "/responses/input_tokens", "POST", summary="Count a request's input tokens", body=CountInputTokens)
def count_input_tokens():
    return ok(responses.count_input_tokens(ctx(), tenant(), parse_body(CountInputTokens)))


@route(
    bp,
    "/responses/<response_id>",
    "GET",
    summary="Retrieve a response",
    returns="stream",
    events="ResponseStreamEvent",
)
def retrieve_response(response_id: str):
    _response_id(response_id)
    include = _includes()
    if _flag("stream"):
        cursor = responses.stream_cursor(ctx(), tenant(), response_id, _starting_after())
        return response_stream(response_id, cursor)
    return ok(responses.get(ctx(), tenant(), response_id, include))


@route(bp, "/responses/<response_id>", "DELETE", summary="Delete a response", returns="deleted")
def delete_response(response_id: str):
    return ok(responses.delete(ctx(), tenant(), _response_id(response_id)))


@route(
    bp, "/responses/<response_id>/cancel", "POST", summary="Cancel a background response", object="response"
)
def cancel_response(response_id: str):
    return ok(responses.cancel(ctx(), tenant(), _response_id(response_id)))


@route(
    bp,
    "/responses/<response_id>/input_items",
    "GET",
    summary="List a response's input items",
    query=AfterQuery,
    returns="list",
)
def list_input_items(response_id: str):
    _response_id(response_id)
    _includes()
    query = list_query(AfterQuery)
    return ok(
        responses.input_items(
            ctx(), tenant(), response_id, limit=query["limit"], order=query["order"], after=query["after"]
        )
    )


def _includes() -> list[str]:
    return include(allowed=INCLUDABLE)


def _flag(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidRequest(f"Invalid '{name}': expected true or false.", param=name, code="invalid_value")
    return value.lower() == "true"


def _starting_after() -> int | None:
    raw = request.args.get("starting_after")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) > MAX_CURSOR:
        raise InvalidRequest(
            f"Invalid 'starting_after': expected a sequence number from 0 to {MAX_CURSOR}.",
            param="starting_after",
            code="invalid_value",
        )
    return int(raw)
