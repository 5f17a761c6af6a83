"""The run inspector: a static page at /ui, and the JSON it reads under /ui/api (API key required).

The page holds no data and needs no key to load; it asks for the key, keeps it in the tab's
sessionStorage, and sends it as `Authorization: Bearer` with every call — to /ui/api and to the event
stream of a run or a response — so keys never travel in URLs (and so never in access logs). A link may carry the key in its
fragment (`/ui#key=…`), which browsers do not send to the server; the page removes it at once.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, request, send_from_directory

from orchestrator.api.auth import authenticate, tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok
from orchestrator.api.observe import bind_ids
from orchestrator.domain.errors import InvalidRequest
from orchestrator.services import inspector, inspector_responses

ASSETS = Path(__file__).resolve().parent.parent / "ui"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

page = Blueprint("ui", __name__)
api = Blueprint("ui_api", __name__)
api.before_request(authenticate)
api.before_request(bind_ids)


def init_app(app: Flask) -> None:
    app.register_blueprint(page, url_prefix="/ui")
    app.register_blueprint(api, url_prefix="/ui/api")


@page.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


@page.get("/")
@page.get("", endpoint="index_bare", strict_slashes=False)
def index():
    return send_from_directory(ASSETS, "index.html", max_age=0)


@page.get("/static/<path:name>")
def asset(name: str):
    return send_from_directory(ASSETS, name, max_age=0)


@api.get("/threads")
def threads():
    return ok(inspector.list_threads(ctx(), tenant(), limit=_limit(), before=_before("thread")))


@api.get("/threads/<thread_id>/runs")
def thread_runs(thread_id: str):
    check_id(thread_id, "thread", "thread_id")
    return ok(inspector.thread_runs(ctx(), tenant(), thread_id, limit=_limit()))


@api.get("/runs/<run_id>")
def run_detail(run_id: str):
    check_id(run_id, "run", "run_id")
    return ok(inspector.run_detail(ctx(), tenant(), run_id))


@api.get("/responses")
def responses():
    return ok(inspector_responses.list_responses(ctx(), tenant(), limit=_limit(), before=_before("resp")))


@api.get("/responses/<response_id>")
def response_detail(response_id: str):
    check_id(response_id, "resp", "response_id")
    return ok(inspector_responses.response_detail(ctx(), tenant(), response_id))


@api.get("/conversations")
def conversations():
    return ok(inspector_responses.list_conversations(ctx(), tenant(), limit=_limit(), before=_before("conv")))


@api.get("/conversations/<conversation_id>")
def conversation_detail(conversation_id: str):
    check_id(conversation_id, "conv", "conversation_id")
    return ok(inspector_responses.conversation_detail(ctx(), tenant(), conversation_id))


def _before(prefix: str) -> str | None:
    """A list's page cursor: the id of the oldest entry of the page before."""
    before = request.args.get("before")
    return check_id(before, prefix, "before") if before else None


def _limit(default: int = 50, most: int = 200) -> int:
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"Invalid 'limit': expected an integer from 1 to {most}.", param="limit")
    return int(raw)
