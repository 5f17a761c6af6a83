"""`Idempotency-Key` on any POST: the first response is replayed to every retry, and nothing is done again.

The design is in orchestrator/services/idempotency.py: the key's row goes in with the request's change, in
the same transaction. Here, the web side of it:

- `begin` (before the view): replay a stored outcome; wait (up to WAIT seconds) for one still pending,
  else answer 409; or let the request go on, carrying its key into every transaction it commits.
- `taken` (an error handler): a transaction of this request lost the key to a concurrent retry and rolled
  back; the caller gets that request's outcome.
- `finish` (after the view): store the response for the retries; a 4xx of a request that lost the key to
  a concurrent retry gives way to that request's outcome. A 5xx stores nothing.
- A stream (`"stream": true`) cannot be stored: its record is the run and the cursor the stream started
  from, and a retry gets that run's stream again from the same start: every event the first attempt
  would have sent, then the live ones, ending like the original.
"""

from __future__ import annotations

import logging
import time

from flask import Response, g, request

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.errors import error_response
from orchestrator.api.http import ok, read_body
from orchestrator.api.sse import response_stream, run_stream
from orchestrator.domain.errors import (
    Conflict,
    IdempotencyKeyTaken,
    IdempotencyOutcomeLost,
    OrchestratorError,
)
from orchestrator.services import idempotency, responses, runs
from orchestrator.services.idempotency import KeyState, Outcome, RequestKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
WAIT = 10.0  # how long a retry waits for the first request's outcome
# A change's response is stored milliseconds after its commit: a row pending longer than this belongs to a
# request whose process died in between.
LOST_AFTER = 2 * WAIT
KEPT_HEADERS = ("Content-Type", "openai-poll-after-ms")


def begin() -> Response | None:
    """A before_request hook (after authentication and the rate limit): a replay, or None to go on."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    idempotency.check_key(key)
    carried = RequestKey(tenant(), key, idempotency.request_hash(request.method, request.path, read_body()))
    settled = _settled(carried)
    if settled is not None:
        return _replay(settled)
    g.idempotency = (carried, idempotency.carry(carried))
    return None


def taken(_error: IdempotencyKeyTaken) -> Response:
    """An error handler: the request's change rolled back because a concurrent retry recorded the key
    first; answer with that request's outcome."""
    carried = _drop()
    if carried is None:  # not this request's key (it cannot be): the retryable 409 it carries
        return error_response(_error)
    try:
        return _replay(_settled(carried, must_exist=True))
    except OrchestratorError as error:  # raised in an error handler, it would be a bare 500
        return error_response(error)


def finish(response: Response) -> Response:
    """An after_request hook: store the outcome of a request that carried its key."""
    carried = _drop()
    if carried is None or response.status_code >= 500:
        return response  # a 5xx: whatever committed recorded itself; if nothing did, the key stays free
    try:
        if idempotency.settle(ctx(), carried, _record(response)):
            return response
    except Exception:
        # Postgres went away after the response was made: a change that committed holds its record.
        log.warning("could not store the outcome of idempotency key %r", carried.key, exc_info=True)
        return response
    # A concurrent retry recorded the key first, and this request changed nothing: its outcome wins.
    try:
        return _replay(_settled(carried, must_exist=True))
    except OrchestratorError as error:  # an after_request hook answers; error handlers do not run here
        return error_response(error)


def forget(_error: BaseException | None = None) -> None:
    """A teardown hook: a request that ended without `finish` leaves its key behind it."""
    _drop()


def _drop() -> RequestKey | None:
    held = g.pop("idempotency", None)
    if held is None:
        return None
    carried, token = held
    idempotency.drop(token)
    return carried


def _settled(carried: RequestKey, *, must_exist: bool = False) -> Outcome | None:
    """The outcome stored for the key, waiting for one still pending; None when the key is free."""
    deadline = time.monotonic() + WAIT
    while True:
        stored = idempotency.look_up(ctx(), carried.tenant_id, carried.key, carried.request_hash)
        if stored is None and not must_exist:
            return None
        if stored is not None and stored.outcome.state != KeyState.PENDING:
            return stored.outcome
        if time.monotonic() > deadline:
            raise _unsettled(stored)
        time.sleep(0.05)


def _unsettled(stored: idempotency.Stored | None) -> Conflict:
    """Still pending after WAIT: in use while the row is young, else its request died after its commit."""
    if stored is None or stored.created_at > ctx().clock.now() - LOST_AFTER:
        return Conflict(
            "Another request with this Idempotency-Key is still being processed; retry shortly.",
            param=HEADER,
            code="idempotency_key_in_use",
        )
    return IdempotencyOutcomeLost()


def _record(response: Response) -> Outcome:
    stream = g.get("stream_of")
    if stream is not None:
        return Outcome(KeyState.STREAM, 200, None, stream)
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    return Outcome(KeyState.COMPLETED, response.status_code, response.get_data(as_text=True), headers)


def _follow(origin: dict) -> Response:
    """A stream from where the first attempt's started, or a response's final object once it ends."""
    if "response_id" not in origin:
        run = runs.get(ctx(), tenant(), origin["thread_id"], origin["run_id"])
        return run_stream(run, origin["cursor"])
    if origin.get("wait"):
        responses.wait(ctx(), origin["response_id"])
        return ok(responses.final(ctx(), tenant(), origin["response_id"]))
    return response_stream(origin["response_id"], origin["cursor"])


def _replay(outcome: Outcome) -> Response:
    if outcome.state == KeyState.STREAM:
        response = _follow(outcome.headers or {})
    else:
        response = Response(outcome.body, status=outcome.status)
        for name, value in (outcome.headers or {}).items():
            response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response
