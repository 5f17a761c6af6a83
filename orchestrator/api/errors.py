"""Every failure leaves as the OpenAI error envelope (contract §5); a 500 is always a bug."""

from __future__ import annotations

import logging
import math

from flask import Flask, Response, json, request
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from orchestrator.domain.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    OrchestratorError,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)


def error_response(error: OrchestratorError, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(error.envelope()), status=error.status, mimetype="application/json")
    if error.retryable:
        # Whole seconds, rounded up (the SDK also reads `retry-after-ms` for finer waits).
        retry_after = getattr(error, "retry_after", 1.0)
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        response.headers["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
    elif error.status == 409:
        response.headers["x-should-retry"] = "false"  # the SDK retries every 409 unless told not to
    if isinstance(error, RequestTimeout):
        response.headers["Connection"] = "close"  # the rest of the body is not worth waiting for
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(OrchestratorError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DataError, _unstorable)
    app.register_error_handler(OverflowError, _unstorable)  # SQLite's driver, for an int past 64 bits
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InterfaceError, _database_down)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error: HTTPException) -> Response:
    if error.code == 404:
        return error_response(NotFound(f"Invalid URL ({request.method} {request.path})"))
    if error.code == 405:
        allowed = ", ".join(getattr(error, "valid_methods", None) or [])
        return error_response(
            MethodNotAllowed(f"Invalid method for URL ({request.method} {request.path})"),
            {"Allow": allowed} if allowed else None,
        )
    if error.code == 413:
        limit = request.max_content_length
        return error_response(
            PayloadTooLarge(
                f"The request body is too large. The maximum is {limit} bytes.", code="request_too_large"
            )
        )
    wrapped = OrchestratorError(error.description or "Bad request.")
    wrapped.status, wrapped.type = error.code or 400, "invalid_request_error"
    return error_response(wrapped)


def _unstorable(error: DataError | OverflowError) -> Response:
    # Validation should have refused the value; the database is the last line, and the caller still
    # gets a 4xx for their input rather than a 500.
    log.warning(
        "database refused a value on %s %s: %s", request.method, request.path, getattr(error, "orig", error)
    )
    return error_response(
        InvalidRequest("Invalid request: a value in the request is out of range or cannot be stored.")
    )


def _database_down(_error: Exception) -> Response:
    # Outside a unit of work (which translates these itself): still the database going away, not a bug.
    log.warning("database unavailable on %s %s", request.method, request.path)
    return error_response(ServiceUnavailable("The database is unavailable; try again shortly."))


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(OrchestratorError("The server had an error while processing your request."))
