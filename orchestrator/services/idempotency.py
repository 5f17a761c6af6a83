"""Idempotency keys: one key, one result, whatever dies when.

A POST sent with an `Idempotency-Key` gets, on every retry, the outcome of the first request that carried
it, and nothing is done twice. The design rests on one rule: **the key's row is written in the transaction
that makes the request's change**, never in a transaction of its own.

- Before the view runs, the key is looked up (no write). A stored outcome is replayed; a row still
  `pending` (its request's change committed, its response not stored yet) is waited for. No row: the
  request goes on, carrying the key (`db/idempotency_keys.bind`).
- The request's first commit inserts the key's row in the same transaction as its change (`UnitOfWork.commit`),
  with the outcome itself when the service knows it before commit (`answer`, `answer_stream`: a run's
  creation, a submit, a cancel), else `pending`. So a request that dies before its commit leaves nothing,
  and the key is free again at once; one that dies after it leaves its outcome (or, for the few changes
  that cannot know their response before commit, a `pending` row: see below).
- Concurrent retries both act, and the database picks one: the second transaction's insert of the key
  conflicts (on Postgres it first waits for the first transaction to end), it rolls back with its whole
  change (`IdempotencyKeyTaken`), and its caller gets the first request's outcome. A retry that failed
  for another reason first (a run create that met the first attempt's active run) finds the key taken
  when it stores its own error, and answers the first request's outcome instead.
- Once the response is known it is stored for the retries (`settle`), over what the transaction wrote:
  the response the client got is the one replayed. A 5xx stores nothing: if nothing committed the key
  stays free; if something did, the transaction's record stands.
- A `pending` row that stays so for seconds belongs to a request whose process died between its
  commit and storing its response, in a change whose service does not declare its outcome: its retries
  get a 409 `idempotency_key_outcome_lost` (the change was made once; the client should read the
  result, not make it again).

No pending claim outlives its request, so nothing depends on a lock or a connection staying alive, and the
same code serves Postgres and SQLite (`orchestrator dev`). Keys live `TTL` seconds; the scheduler's sweep
deletes older ones.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from orchestrator.context import Context
from orchestrator.db import idempotency_keys, models
from orchestrator.db.idempotency_keys import TTL, KeyState, Outcome, RequestKey
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.errors import IdempotencyKeyTaken, InvalidRequest

__all__ = ["TTL", "KeyState", "Outcome", "RequestKey", "Stored"]

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Stored:
    """A key's row as a retry finds it."""

    outcome: Outcome
    created_at: float


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogateescape"), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidRequest(
            f"Invalid 'Idempotency-Key': expected 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            param="Idempotency-Key",
            code="invalid_value",
        )
    return key


def carry(key: RequestKey) -> Token:
    """From now on, this request's commits carry `key` (until `drop`)."""
    return idempotency_keys.bind(key)


def drop(token: Token) -> None:
    idempotency_keys.unbind(token)


def look_up(ctx: Context, tenant_id: str, key: str, hashed: str) -> Stored | None:
    """The key's row for a request about to run: None when the key is free (never used, or expired: the
    expired row is deleted). The same key with another request is a 400."""
    with ctx.uow() as uow:
        row = uow.session.get(models.IdempotencyKey, (tenant_id, key))
        if row is None:
            return None
        if row.created_at < ctx.clock.now() - TTL:  # expired, not swept yet: a new key
            uow.session.delete(row)
            uow.commit()
            return None
        if row.request_hash != hashed:
            raise InvalidRequest(
                "Keys for idempotent requests can only be used with the same parameters they were first "
                "used with. Try using a key other than the one used in the original request.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return Stored(_outcome(row), row.created_at)


def settle(ctx: Context, key: RequestKey, outcome: Outcome) -> bool:
    """Store the request's outcome for its retries. False when another request recorded the key first
    (this request changed nothing): the caller answers with that request's outcome instead."""
    with ctx.uow() as uow:
        try:
            key.write(uow.session, ctx.clock.now(), outcome)
        except IdempotencyKeyTaken:
            return False
        uow.session.commit()  # the row alone: no event, no effect
        key.recorded = True
        return True


def answer(uow: UnitOfWork, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Declare, before commit, the JSON response the request gets: stored with its key, if it sent one."""
    if idempotency_keys.current() is None:
        return  # nothing to store it with: no encoding on the hot path
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    uow.outcome = Outcome(
        KeyState.COMPLETED, 200, body, {"Content-Type": "application/json", **(headers or {})}
    )


def answer_stream(uow: UnitOfWork, thread_id: str, run_id: str, cursor: int) -> None:
    """Declare, before commit, that the request streams this run's events after `cursor`."""
    follow(uow, {"thread_id": thread_id, "run_id": run_id, "cursor": cursor})


def follow(uow: UnitOfWork, origin: dict[str, Any]) -> None:
    """Declare, before commit, that the request's answer follows what it changed: a run's or a response's
    stream from a cursor, or (`wait`) a response's final object once it ends. A retry follows it too."""
    if idempotency_keys.current() is None:
        return
    uow.outcome = Outcome(KeyState.STREAM, 200, None, origin)


def _outcome(row: models.IdempotencyKey) -> Outcome:
    return Outcome(KeyState(row.state), row.status, row.body, row.headers)
