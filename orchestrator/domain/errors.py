"""One error tree for the whole product.

    OrchestratorError            root; carries the OpenAI error envelope fields
    ├── InvalidRequest           400 invalid_request_error (bad input, state conflicts)
    ├── Unauthorized             401 invalid_request_error / invalid_api_key
    ├── NotFound                 404 invalid_request_error
    ├── MethodNotAllowed         405
    ├── Conflict                 409, retryable (the same idempotency key is still being processed)
    ├── RequestTimeout           408 (the client did not send its request in time)
    ├── PayloadTooLarge          413
    ├── RateLimited              429 rate_limit_exceeded, retryable after `retry_after` seconds
    ├── ServiceUnavailable       503 server_error, retryable (a dependency is down)
    │   └── SandboxUnavailable   the code sandbox is down, unreachable or busy
    ├── UpstreamError            a relayed call (chat completions, embeddings) the upstream refused or
    │                            failed: its own 4xx, 502 when it failed or was unreachable, 504 when silent
    ├── StaleRun                 a guarded write on a run matched no row: its status does not allow it,
    │                            or the writer no longer holds the lease; never reaches HTTP
    └── LeaseLost                a worker no longer holds a file ingestion's lease; never reaches HTTP

Each class knows its HTTP status and whether a retry could succeed; the web layer maps it once
to a response and the worker maps it once to retry / give up.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    status = 500
    type = "server_error"
    retryable = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(OrchestratorError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(OrchestratorError):
    status = 401
    type = "invalid_request_error"


class NotFound(OrchestratorError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(OrchestratorError):
    status = 405
    type = "invalid_request_error"


class Conflict(OrchestratorError):
    status = 409
    type = "invalid_request_error"
    retryable = True


class PayloadTooLarge(OrchestratorError):
    status = 413
    type = "invalid_request_error"


class RequestTimeout(OrchestratorError):
    status = 408
    type = "invalid_request_error"


class RateLimited(OrchestratorError):
    """Over the tenant's request rate; `retry_after` is when the next request would be admitted."""

    status = 429
    type = "requests"
    retryable = True

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after = retry_after


class ServiceUnavailable(OrchestratorError):
    status = 503
    type = "server_error"
    retryable = True


class SandboxUnavailable(ServiceUnavailable):
    """The code_interpreter sandbox did not run the code: not reachable, timed out, or every slot busy."""


class UpstreamError(OrchestratorError):
    """A relayed call that the upstream model endpoint refused or failed, with the status the client gets.
    `retry_after` is the upstream's own (a 429's), passed on; `headers` are the upstream's to pass on."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str = "server_error",  # noqa: A002 - the envelope's own word
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message, param=param, code=code)
        self.status, self.type = status, type
        self.retryable = retry_after is not None
        self.retry_after = retry_after if retry_after is not None else 1.0
        self.headers = headers or {}


class StaleRun(OrchestratorError):
    """A guarded write on a run matched no row: the run moved on (cancelled, expired, ended, taken over)
    without this writer. A worker stops quietly; the API says why in the caller's terms."""


class LeaseLost(OrchestratorError):
    """A worker no longer holds the lease of the file ingestion (chunk set) it works on: stop quietly."""


def not_found(kind: str, object_id: str) -> NotFound:
    return NotFound(f"No {kind} found with id '{object_id}'.")
