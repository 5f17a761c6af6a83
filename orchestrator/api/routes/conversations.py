from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, check_plain_id, ok, parse_body, route
from orchestrator.api.query import include, list_query
from orchestrator.domain.includes import INCLUDABLE
from orchestrator.schemas.conversations import (
    CreateConversation,
    CreateItems,
    ItemListQuery,
    UpdateConversation,
)
from orchestrator.services import conversations

bp = Blueprint("conversations", __name__)
ITEM = "conversation.item"


def _ids(conversation_id: str, item_id: str | None = None) -> None:
    check_id(conversation_id, "conv", "conversation_id")
    if item_id is not None:
        check_plain_id(item_id, "item_id")


@route(bp, "/conversations", "POST", summary="Create a conversation", body=CreateConversation)
def create_conversation():
    return ok(conversations.create(ctx(), tenant(), parse_body(CreateConversation)))


@route(bp, "/conversations/<conversation_id>", "GET", summary="Retrieve a conversation")
def get_conversation(conversation_id: str):
    _ids(conversation_id)
    return ok(conversations.get(ctx(), tenant(), conversation_id))


@route(
    bp, "/conversations/<conversation_id>", "POST", summary="Update a conversation", body=UpdateConversation
)
def update_conversation(conversation_id: str):
    _ids(conversation_id)
    return ok(conversations.update(ctx(), tenant(), conversation_id, parse_body(UpdateConversation)))


@route(bp, "/conversations/<conversation_id>", "DELETE", summary="Delete a conversation", returns="deleted")
def delete_conversation(conversation_id: str):
    _ids(conversation_id)
    return ok(conversations.delete(ctx(), tenant(), conversation_id))


@route(
    bp,
    "/conversations/<conversation_id>/items",
    "POST",
    summary="Create conversation items",
    body=CreateItems,
    returns="list",
    object=ITEM,
)
def create_items(conversation_id: str):
    _ids(conversation_id)
    included = include(INCLUDABLE)  # in the query (items.py: create)
    body = parse_body(CreateItems)
    return ok(conversations.add_items(ctx(), tenant(), conversation_id, body, frozenset(included)))


@route(
    bp,
    "/conversations/<conversation_id>/items",
    "GET",
    summary="List conversation items",
    query=ItemListQuery,
    returns="list",
    object=ITEM,
)
def list_items(conversation_id: str):
    _ids(conversation_id)
    query = list_query(ItemListQuery)
    if query["after"] is not None:
        check_plain_id(query["after"], "after")
    included = frozenset(include(INCLUDABLE))
    return ok(conversations.list_items(ctx(), tenant(), conversation_id, include=included, **query))


@route(
    bp,
    "/conversations/<conversation_id>/items/<item_id>",
    "GET",
    summary="Retrieve a conversation item",
    object=ITEM,
)
def get_item(conversation_id: str, item_id: str):
    _ids(conversation_id, item_id)
    included = frozenset(include(INCLUDABLE))
    return ok(conversations.get_item(ctx(), tenant(), conversation_id, item_id, included))


@route(
    bp,
    "/conversations/<conversation_id>/items/<item_id>",
    "DELETE",
    summary="Delete a conversation item",
    object="conversation",
)
def delete_item(conversation_id: str, item_id: str):
    _ids(conversation_id, item_id)
    return ok(conversations.delete_item(ctx(), tenant(), conversation_id, item_id))
