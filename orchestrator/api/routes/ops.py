"""For operators, outside the OpenAI API: /readyz and /metrics. No API key (docs/operating.md)."""

from flask import Blueprint, Response, jsonify, request

from orchestrator.api.context import ctx
from orchestrator.api.errors import error_response
from orchestrator.domain.errors import Unauthorized
from orchestrator.observability import metrics
from orchestrator.services import health

bp = Blueprint("ops", __name__)


@bp.get("/readyz")
def readyz():
    checks = health.readiness(ctx())
    ready = all(check.ok for check in checks)
    body = {"status": "ready" if ready else "unavailable", "checks": {c.name: c.as_json() for c in checks}}
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics_view():
    context = ctx()
    if not metrics.authorized(context.settings, request.headers.get("Authorization")):
        return error_response(
            Unauthorized("This endpoint needs the metrics token (ORCHESTRATOR_METRICS_TOKEN).")
        )
    from orchestrator.api.scrape import StateCollector

    body, content_type = metrics.exposition(StateCollector(context))
    return Response(body, status=200, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
