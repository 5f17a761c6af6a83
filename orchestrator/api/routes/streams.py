"""Attach to any run's event stream (also one created without `stream`), resumable by cursor."""

from flask import Blueprint, request

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, route
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


# Sequence numbers are Postgres INTEGERs: a larger cursor is refused here, before the stream starts,
# rather than overflowing inside the stream's generator where no error handler can answer it.
MAX_CURSOR = 2**31 - 1


def _cursor() -> int:
    header = request.headers.get("Last-Event-ID")
    param = "Last-Event-ID" if header else "after"
    raw = header or request.args.get("after") or "0"
    if not (raw.isascii() and raw.strip().isdigit()) or len(raw) > 12 or int(raw) > MAX_CURSOR:
        raise InvalidRequest(
            f"Invalid '{param}': '{_shown(raw)}'. Expected an event sequence number from 0 to {MAX_CURSOR}.",
            param=param,
            code="invalid_value",
        )
    return int(raw)


def _shown(raw: str) -> str:
    return raw if len(raw) <= 40 else raw[:40] + "…"
