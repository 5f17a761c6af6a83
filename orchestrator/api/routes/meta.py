"""Health and the OpenAPI description; no authentication."""

from flask import Blueprint
from sqlalchemy import text

from orchestrator.api.context import ctx
from orchestrator.api.http import ok
from orchestrator.api.openapi import document
from orchestrator.domain.errors import ServiceUnavailable

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz():
    context = ctx()
    try:
        with context.uow() as uow:
            uow.session.execute(text("SELECT 1"))
    except Exception as error:
        raise ServiceUnavailable("Postgres is unreachable.") from error
    if not context.bus.ping():
        raise ServiceUnavailable("Redis is unreachable.")
    return ok({"status": "ok"})


@bp.get("/openapi.json")
def openapi():
    return ok(document())
