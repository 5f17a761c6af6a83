"""Chat completions and embeddings, relayed to the model (the local one, or its route's upstream); the
Azure deployment path names the model instead of the body (api/app.py keeps it in `g.azure_deployment`)."""

from flask import Blueprint, g

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import json_body, route, validate
from orchestrator.api.relay import respond
from orchestrator.relay import chat, embeddings
from orchestrator.schemas.chat import CreateChatCompletion, CreateEmbedding

bp = Blueprint("chat", __name__)


@route(
    bp,
    "/chat/completions",
    "POST",
    summary="Create a chat completion",
    body=CreateChatCompletion,
    returns="stream",
    object="chat.completion",
    events="ChatCompletionStreamEvent",
    idempotent=False,
)
def create_chat_completion():
    raw = _named(json_body())
    body = validate(CreateChatCompletion, raw)
    return respond(chat.complete(ctx(), tenant(), body, raw))


@route(
    bp,
    "/embeddings",
    "POST",
    summary="Create embeddings",
    body=CreateEmbedding,
    object="embedding.list",
    idempotent=False,
)
def create_embeddings():
    raw = _named(json_body())
    body = validate(CreateEmbedding, raw)
    return respond(embeddings.embed(ctx(), tenant(), body, raw))


def _named(raw: dict) -> dict:
    """The body with the Azure deployment, when the path names one, as its model."""
    deployment = g.get("azure_deployment")
    return {**raw, "model": deployment} if deployment else raw
