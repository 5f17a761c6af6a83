"""Attach to any run's event stream (also one created without `stream`), resumable by cursor."""

from flask import Blueprint, request

from orchestrator.api.auth import tenant
from orchestrator.api.http import check_id, route
from orchestrator.api.services import ctx
from orchestrator.api.sse import run_stream
from orchestrator.domain.errors import InvalidRequest
from orchestrator.services import runs

bp = Blueprint("streams", __name__)


@route(
    bp,
    "/threads/<thread_id>/runs/<run_id>/events",
    "GET",
    summary="Stream a run's events (resumable)",
    returns="stream",
)
def run_events(thread_id: str, run_id: str):
    check_id(thread_id, "thread", "thread_id")
    check_id(run_id, "run", "run_id")
    cursor = _cursor()
    run = runs.get(ctx(), tenant(), thread_id, run_id)
    return run_stream(run, cursor)


def _cursor() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid 'after': '{raw}'. Expected an event sequence number.", param="after"
        ) from None
    if value < 0:
        raise InvalidRequest("Invalid 'after': expected a value >= 0.", param="after")
    return value
