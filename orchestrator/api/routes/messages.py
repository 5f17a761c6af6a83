from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, parse_body, route
from orchestrator.api.query import list_query
from orchestrator.schemas.messages import CreateMessage, MessageListQuery, ModifyMessage
from orchestrator.services import messages

bp = Blueprint("messages", __name__)


def _ids(thread_id: str, message_id: str | None = None) -> None:
    check_id(thread_id, "thread", "thread_id")
    if message_id is not None:
        check_id(message_id, "msg", "message_id")


@route(bp, "/threads/<thread_id>/messages", "POST", summary="Create a message", body=CreateMessage)
def create_message(thread_id: str):
    _ids(thread_id)
    return ok(messages.create(ctx(), tenant(), thread_id, parse_body(CreateMessage)))


@route(
    bp,
    "/threads/<thread_id>/messages",
    "GET",
    summary="List messages",
    query=MessageListQuery,
    returns="list",
)
def list_messages(thread_id: str):
    _ids(thread_id)
    query = list_query(MessageListQuery)
    if query["run_id"] is not None:
        check_id(query["run_id"], "run", "run_id")
    return ok(messages.list_(ctx(), tenant(), thread_id, **query))


@route(bp, "/threads/<thread_id>/messages/<message_id>", "GET", summary="Retrieve a message")
def get_message(thread_id: str, message_id: str):
    _ids(thread_id, message_id)
    return ok(messages.get(ctx(), tenant(), thread_id, message_id))


@route(
    bp, "/threads/<thread_id>/messages/<message_id>", "POST", summary="Modify a message", body=ModifyMessage
)
def modify_message(thread_id: str, message_id: str):
    _ids(thread_id, message_id)
    return ok(messages.modify(ctx(), tenant(), thread_id, message_id, parse_body(ModifyMessage)))


@route(
    bp, "/threads/<thread_id>/messages/<message_id>", "DELETE", summary="Delete a message", returns="deleted"
)
def delete_message(thread_id: str, message_id: str):
    _ids(thread_id, message_id)
    return ok(messages.delete(ctx(), tenant(), thread_id, message_id))
