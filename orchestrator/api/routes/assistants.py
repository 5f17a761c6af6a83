from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import object_id, ok, parse_body, route
from orchestrator.api.query import list_query
from orchestrator.schemas.assistants import CreateAssistant, ModifyAssistant
from orchestrator.schemas.pagination import ListQuery
from orchestrator.services import assistants

bp = Blueprint("assistants", __name__)


@route(bp, "/assistants", "POST", summary="Create an assistant", body=CreateAssistant)
def create_assistant():
    return ok(assistants.create(ctx(), tenant(), parse_body(CreateAssistant)))


@route(bp, "/assistants", "GET", summary="List assistants", query=ListQuery, returns="list")
def list_assistants():
    return ok(assistants.list_(ctx(), tenant(), **list_query()))


@route(bp, "/assistants/<assistant_id>", "GET", summary="Retrieve an assistant")
def get_assistant(assistant_id: str):
    object_id(assistant_id, "asst", "assistant")
    return ok(assistants.get(ctx(), tenant(), assistant_id))


@route(bp, "/assistants/<assistant_id>", "POST", summary="Modify an assistant", body=ModifyAssistant)
def modify_assistant(assistant_id: str):
    object_id(assistant_id, "asst", "assistant")
    return ok(assistants.modify(ctx(), tenant(), assistant_id, parse_body(ModifyAssistant)))


@route(bp, "/assistants/<assistant_id>", "DELETE", summary="Delete an assistant", returns="deleted")
def delete_assistant(assistant_id: str):
    object_id(assistant_id, "asst", "assistant")
    return ok(assistants.delete(ctx(), tenant(), assistant_id))
