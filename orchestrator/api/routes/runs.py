from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, parse_body, route
from orchestrator.api.query import include, list_query
from orchestrator.api.sse import run_stream, subscription
from orchestrator.schemas.pagination import ListQuery
from orchestrator.schemas.runs import CreateRun, CreateThreadAndRun, ModifyRun, SubmitToolOutputs
from orchestrator.services import runs

bp = Blueprint("runs", __name__)


def _poll_headers() -> dict[str, str]:
    # The SDK's poll helpers sleep this long between GETs; it must be an integer string.
    return {"openai-poll-after-ms": str(int(ctx().settings.poll_after_ms))}


def _ids(thread_id: str, run_id: str | None = None) -> None:
    check_id(thread_id, "thread", "thread_id")
    if run_id is not None:
        check_id(run_id, "run", "run_id")


@route(bp, "/threads/<thread_id>/runs", "POST", summary="Create a run", body=CreateRun, returns="stream")
def create_run(thread_id: str):
    _ids(thread_id)
    content = bool(include())
    body = parse_body(CreateRun)
    with subscription(body.stream) as opened:
        accepted = runs.create(ctx(), tenant(), thread_id, body, search_content=content, watch=opened)
    return (
        run_stream(accepted.run, accepted.cursor, opened, accepted.events)
        if body.stream
        else ok(accepted.run, headers=_poll_headers())
    )


@route(
    bp,
    "/threads/runs",
    "POST",
    summary="Create a thread and run it",
    body=CreateThreadAndRun,
    returns="stream",
)
def create_thread_and_run():
    body = parse_body(CreateThreadAndRun)
    with subscription(body.stream) as opened:
        accepted = runs.create_thread_and_run(ctx(), tenant(), body, watch=opened)
    return (
        run_stream(accepted.run, accepted.cursor, opened, accepted.events)
        if body.stream
        else ok(accepted.run, headers=_poll_headers())
    )


@route(bp, "/threads/<thread_id>/runs", "GET", summary="List runs", query=ListQuery, returns="list")
def list_runs(thread_id: str):
    _ids(thread_id)
    return ok(runs.list_(ctx(), tenant(), thread_id, **list_query()))


@route(bp, "/threads/<thread_id>/runs/<run_id>", "GET", summary="Retrieve a run")
def get_run(thread_id: str, run_id: str):
    _ids(thread_id, run_id)
    return ok(runs.get(ctx(), tenant(), thread_id, run_id), headers=_poll_headers())


@route(bp, "/threads/<thread_id>/runs/<run_id>", "POST", summary="Modify a run", body=ModifyRun)
def modify_run(thread_id: str, run_id: str):
    _ids(thread_id, run_id)
    body = parse_body(ModifyRun)
    return ok(runs.modify(ctx(), tenant(), thread_id, run_id, body.metadata))


@route(bp, "/threads/<thread_id>/runs/<run_id>/cancel", "POST", summary="Cancel a run")
def cancel_run(thread_id: str, run_id: str):
    _ids(thread_id, run_id)
    return ok(runs.cancel(ctx(), tenant(), thread_id, run_id), headers=_poll_headers())


@route(
    bp,
    "/threads/<thread_id>/runs/<run_id>/submit_tool_outputs",
    "POST",
    summary="Submit tool outputs",
    body=SubmitToolOutputs,
    returns="stream",
)
def submit_tool_outputs(thread_id: str, run_id: str):
    _ids(thread_id, run_id)
    body = parse_body(SubmitToolOutputs)
    with subscription(body.stream) as opened:
        accepted = runs.submit_tool_outputs(ctx(), tenant(), thread_id, run_id, body, watch=opened)
    return (
        run_stream(accepted.run, accepted.cursor, opened, accepted.events)
        if body.stream
        else ok(accepted.run, headers=_poll_headers())
    )
