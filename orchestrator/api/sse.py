"""Server-Sent Events responses for run streams."""

from __future__ import annotations

from flask import Response, current_app

from orchestrator.api.services import ctx
from orchestrator.services.streams import relay


def run_stream(run: dict, cursor: int) -> Response:
    """Stream the run's events after `cursor` until this leg of the run ends."""
    hub = current_app.extensions["hub"]
    body = relay(ctx(), hub, run["id"], cursor)
    response = Response(body, status=200, mimetype="text/event-stream")
    response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: don't buffer the stream
    return response
