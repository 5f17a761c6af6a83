"""Per-request observability: ids bound to the log context, an access line, and the latency histogram
labelled by URL rule (never the raw path, whose ids would make a series per object)."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from orchestrator.observability import logs
from orchestrator.observability.metrics import instruments

access = logs.get("orchestrator.access")


def init_app(app: Flask) -> None:
    """Call after the request id hook is registered: the ids of an earlier request on the same
    connection (greenlet) are cleared first."""
    app.before_request(_start)
    app.after_request(_finish)


def bind_ids() -> None:
    """After authentication: the tenant, and the object ids in the URL."""
    ids = {key: value for key, value in (request.view_args or {}).items() if key in logs.IDS}
    logs.bind(tenant_id=g.get("tenant_id"), **ids)


def _start() -> None:
    logs.clear()
    g.started = time.perf_counter()
    logs.bind(request_id=g.get("request_id"))


def _finish(response: Response) -> Response:
    started = g.get("started")
    if started is None:
        return response
    elapsed = time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    instruments().http_latency.labels(request.method, route, str(response.status_code)).observe(elapsed)
    access.info(
        "request",
        method=request.method,
        route=route,
        path=request.path,
        status=response.status_code,
        ms=round(elapsed * 1000, 1),
    )
    return response
