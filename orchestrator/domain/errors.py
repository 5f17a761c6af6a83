"""One error tree for the whole product.

    OrchestratorError            root; carries the OpenAI error envelope fields
    ├── InvalidRequest           400 invalid_request_error (bad input, state conflicts)
    ├── Unauthorized             401 invalid_request_error / invalid_api_key
    ├── NotFound                 404 invalid_request_error
    ├── MethodNotAllowed         405
    ├── Conflict                 409, retryable (the same idempotency key is still being processed)
    │   ├── IdempotencyKeyTaken  another request's transaction recorded the key first: the API answers
    │   │                        with that request's outcome instead
    │   └── IdempotencyOutcomeLost  not retryable: the key's request made its change, but its process
    │                            died before storing the response
    ├── RequestTimeout           408 (the client did not send its request in time)
    ├── PayloadTooLarge          413
    ├── RateLimited              429 rate_limit_exceeded, retryable after `retry_after` seconds
    ├── ServiceUnavailable       503 server_error, retryable (a dependency is down)
    │   └── SandboxUnavailable   the code sandbox is down, unreachable or busy
    ├── UpstreamError            a relayed call (chat completions, embeddings) the upstream refused or
    │                            failed: its own 4xx, 502 when it failed or was unreachable, 504 when silent
    └── StaleWrite               a guarded write on durable work (a run, a chunk set) matched no row: its
                                 status does not allow it, or the writer no longer holds the lease; never
                                 reaches HTTP

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


class IdempotencyKeyTaken(Conflict):
    """A transaction of this request found the request's Idempotency-Key recorded by another request (a
    concurrent retry): it rolled back, and the caller gets that request's outcome (api/idempotent.py)."""

    def __init__(self, key: str):
        super().__init__(
            "Another request with this Idempotency-Key is still being processed; retry shortly.",
            param="Idempotency-Key",
            code="idempotency_key_in_use",
        )
        self.key = key


class IdempotencyOutcomeLost(Conflict):
    retryable = False

    def __init__(self) -> None:
        super().__init__(
            "The request with this Idempotency-Key was carried out, but the server stopped before its "
            "response was stored. Retrieve the result instead of retrying; this key will not repeat it.",
            param="Idempotency-Key",
            code="idempotency_key_outcome_lost",
        )


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


class StaleWrite(OrchestratorError):
    """A guarded write on durable work (a run, a chunk set being ingested) matched no row: the work moved
    on (cancelled, expired, ended, deleted, taken over by another worker) without this writer. A worker
    stops quietly; the API says why in the caller's terms."""


def not_found(kind: str, object_id: str) -> NotFound:
    return NotFound(f"No {kind} found with id '{object_id}'.")
