"""`Idempotency-Key` on any POST: the first response is replayed to every retry, and nothing is done again.

- The key is claimed before the view runs (orchestrator/services/idempotency.py); a retry that arrives
  while the first request still runs waits for its outcome (up to WAIT seconds, else a retryable 409).
- A stream (`"stream": true`) cannot be stored: its record is the run and the cursor the stream started
  from, and a retry gets that run's stream again from the same start: every event the first attempt
  would have sent, then the live ones, ending like the original.
- A 5xx gives the key up (nothing was done, or a retry can tell); every other outcome, a 4xx included,
  is what every retry gets.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Response, g, request

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import read_body
from orchestrator.api.sse import run_stream
from orchestrator.domain.errors import Conflict
from orchestrator.services import idempotency, runs
from orchestrator.services.idempotency import KeyState, Record

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
WAIT = 10.0  # how long a retry waits for the first request's outcome
KEPT_HEADERS = ("Content-Type", "openai-poll-after-ms")


def begin() -> Response | None:
    """A before_request hook (after authentication and the rate limit): a replay, or None to go on."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    idempotency.check_key(key)
    hashed = idempotency.request_hash(request.method, request.path, read_body())
    deadline = time.monotonic() + WAIT
    while True:
        record = idempotency.claim(ctx(), tenant(), key, hashed)
        if record is None:
            g.idempotency_key = key
            return None
        if record.state != KeyState.PENDING:
            return _replay(record)
        if time.monotonic() > deadline:
            raise Conflict(
                "Another request with this Idempotency-Key is still being processed; retry shortly.",
                param=HEADER,
                code="idempotency_key_in_use",
            )
        time.sleep(0.05)


def finish(response: Response) -> Response:
    """An after_request hook: store the outcome of a request that claimed its key."""
    key = g.pop("idempotency_key", None)
    if key is None:
        return response
    context, tenant_id = ctx(), tenant()
    try:
        if response.status_code >= 500:
            idempotency.release(context, tenant_id, key)
        else:
            idempotency.complete(context, tenant_id, key, _record(response))
    except Exception:
        # Postgres went away after the request: retries would wait on the claim until it counts as
        # abandoned. A 5xx's claim is given up as soon as Postgres is back; a stored outcome is lost, so
        # a retry after ABANDONED_AFTER acts anew (and meets the state the first attempt left).
        log.warning("could not store the outcome of idempotency key %r", key, exc_info=True)
        if response.status_code >= 500:
            _release_later(context, tenant_id, key)
    return response


def _release_later(context, tenant_id: str, key: str) -> None:
    def attempt() -> None:
        deadline = time.monotonic() + idempotency.ABANDONED_AFTER
        while time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                idempotency.release(context, tenant_id, key)
                return
            except Exception:
                continue  # still down; the claim lapses by itself at the deadline anyway

    threading.Thread(target=attempt, name="idempotency-release", daemon=True).start()


def _record(response: Response) -> Record:
    stream = g.get("stream_of")
    if stream is not None:
        thread_id, run_id, cursor = stream
        return Record(
            KeyState.STREAM, 200, None, {"thread_id": thread_id, "run_id": run_id, "cursor": cursor}
        )
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    return Record(KeyState.COMPLETED, response.status_code, response.get_data(as_text=True), headers)


def _replay(record: Record) -> Response:
    if record.state == KeyState.STREAM:
        origin = record.headers or {}
        run = runs.get(ctx(), tenant(), origin["thread_id"], origin["run_id"])
        response = run_stream(run, origin["cursor"])
    else:
        response = Response(record.body, status=record.status)
        for name, value in (record.headers or {}).items():
            response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response
