"""Every failure leaves as the OpenAI error envelope (contract §5); a 500 is always a bug."""

from __future__ import annotations

import logging

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from orchestrator.domain.errors import MethodNotAllowed, NotFound, OrchestratorError, PayloadTooLarge

log = logging.getLogger(__name__)


def error_response(error: OrchestratorError) -> Response:
    response = Response(json.dumps(error.envelope()), status=error.status, mimetype="application/json")
    if error.retryable:
        response.headers["Retry-After"] = "1"
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(OrchestratorError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException) -> Response:
    if error.code == 404:
        return error_response(NotFound(f"Invalid URL ({request.method} {request.path})"))
    if error.code == 405:
        return error_response(MethodNotAllowed(f"Invalid method for URL ({request.method} {request.path})"))
    if error.code == 413:
        return error_response(PayloadTooLarge("The request body is too large."))
    wrapped = OrchestratorError(error.description or "Bad request.")
    wrapped.status, wrapped.type = error.code or 400, "invalid_request_error"
    return error_response(wrapped)


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(OrchestratorError("The server had an error while processing your request."))
