"""The models a key can use, in the SDK's shape."""

from flask import Blueprint

from orchestrator.api.context import ctx
from orchestrator.api.http import ok, route
from orchestrator.relay import models

bp = Blueprint("models", __name__)


@route(bp, "/models", "GET", summary="List models", object="model.list")
def list_models():
    return ok(models.available(ctx().settings))


@route(bp, "/models/<path:model>", "GET", summary="Retrieve a model", object="model")
def retrieve_model(model: str):
    return ok(models.retrieve(ctx().settings, model))
