from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, route
from orchestrator.api.query import include, list_query
from orchestrator.schemas.pagination import ListQuery
from orchestrator.services import runs

bp = Blueprint("steps", __name__)


@route(
    bp,
    "/threads/<thread_id>/runs/<run_id>/steps",
    "GET",
    summary="List run steps",
    query=ListQuery,
    returns="list",
)
def list_steps(thread_id: str, run_id: str):
    check_id(thread_id, "thread", "thread_id")
    check_id(run_id, "run", "run_id")
    content = bool(include())
    return ok(runs.list_steps(ctx(), tenant(), thread_id, run_id, search_content=content, **list_query()))


@route(bp, "/threads/<thread_id>/runs/<run_id>/steps/<step_id>", "GET", summary="Retrieve a run step")
def get_step(thread_id: str, run_id: str, step_id: str):
    check_id(thread_id, "thread", "thread_id")
    check_id(run_id, "run", "run_id")
    check_id(step_id, "step", "step_id")
    content = bool(include())
    return ok(runs.get_step(ctx(), tenant(), thread_id, run_id, step_id, search_content=content))
