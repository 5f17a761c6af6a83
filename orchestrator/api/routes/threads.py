from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, parse_body, route
from orchestrator.schemas.threads import CreateThread, ModifyThread
from orchestrator.services import threads

bp = Blueprint("threads", __name__)


@route(bp, "/threads", "POST", summary="Create a thread", body=CreateThread)
def create_thread():
    return ok(threads.create(ctx(), tenant(), parse_body(CreateThread)))


@route(bp, "/threads/<thread_id>", "GET", summary="Retrieve a thread")
def get_thread(thread_id: str):
    check_id(thread_id, "thread", "thread_id")
    return ok(threads.get(ctx(), tenant(), thread_id))


@route(bp, "/threads/<thread_id>", "POST", summary="Modify a thread", body=ModifyThread)
def modify_thread(thread_id: str):
    check_id(thread_id, "thread", "thread_id")
    return ok(threads.modify(ctx(), tenant(), thread_id, parse_body(ModifyThread)))


@route(bp, "/threads/<thread_id>", "DELETE", summary="Delete a thread", returns="deleted")
def delete_thread(thread_id: str):
    check_id(thread_id, "thread", "thread_id")
    return ok(threads.delete(ctx(), tenant(), thread_id))
