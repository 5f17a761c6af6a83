"""Idempotency keys: the first response to a POST sent with an `Idempotency-Key`, kept for its retries.

A request first claims its key (a row in `pending`, committed before the request does anything), so of
concurrent retries exactly one goes on to act: the primary key (tenant, key) decides. When it is done
its response is stored (`completed`), or, for a stream, the run it streams (`stream`), and every retry
gets that instead of acting again. A request that fails for a reason a retry could fix (a 5xx: the
database went away) gives its claim up, so the retry acts instead. Keys live `TTL` seconds; the
scheduler's sweep deletes older ones.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.idempotency_keys import TTL
from orchestrator.domain.errors import InvalidRequest

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
# A claim still pending this long belongs to a request whose process died before it finished (a request
# keeps its claim only until its response starts: a stream's record is stored before it streams).
ABANDONED_AFTER = 60.0


class KeyState(StrEnum):
    PENDING = "pending"  # claimed by a request still running
    COMPLETED = "completed"  # its response is stored
    STREAM = "stream"  # it streamed a run: `headers` holds the run and the cursor the stream started at


@dataclass(frozen=True)
class Record:
    state: KeyState
    status: int | None = None
    body: str | None = None
    headers: dict | None = None


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


def claim(ctx: Context, tenant_id: str, key: str, hashed: str) -> Record | None:
    """Claim the key for this request: None if claimed (go on, then `complete` or `release`), else the
    record of the request that claimed it first. The same key with another request is a 400."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        uow.session.add(
            models.IdempotencyKey(
                tenant_id=tenant_id, key=key, request_hash=hashed, state=KeyState.PENDING, created_at=now
            )
        )
        try:
            uow.commit()
            return None
        except IntegrityError:
            uow.session.rollback()
        row = uow.session.get(models.IdempotencyKey, (tenant_id, key))
        if row is None:  # released or swept between our insert and this read: try once more
            return claim(ctx, tenant_id, key, hashed)
        abandoned = row.state == KeyState.PENDING and row.created_at < now - ABANDONED_AFTER
        if row.created_at < now - TTL or abandoned:
            # Expired and not yet swept, or claimed by a process that died mid-request: this request's now.
            uow.session.delete(row)
            uow.commit()
            return claim(ctx, tenant_id, key, hashed)
        if row.request_hash != hashed:
            raise InvalidRequest(
                "Keys for idempotent requests can only be used with the same parameters they were first "
                "used with. Try using a key other than the one used in the original request.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return Record(KeyState(row.state), row.status, row.body, row.headers)


def find(ctx: Context, tenant_id: str, key: str) -> Record | None:
    with ctx.uow() as uow:
        row = uow.session.get(models.IdempotencyKey, (tenant_id, key))
        return None if row is None else Record(KeyState(row.state), row.status, row.body, row.headers)


def complete(ctx: Context, tenant_id: str, key: str, record: Record) -> None:
    """Store the claimed request's outcome for its retries."""
    with ctx.uow() as uow:
        uow.session.execute(
            update(models.IdempotencyKey)
            .where(
                models.IdempotencyKey.tenant_id == tenant_id,
                models.IdempotencyKey.key == key,
                models.IdempotencyKey.state == KeyState.PENDING,
            )
            .values(state=record.state, status=record.status, body=record.body, headers=record.headers)
        )
        uow.commit()


def release(ctx: Context, tenant_id: str, key: str) -> None:
    """Give a claim up: the request failed in a way a retry could fix, so the retry acts anew."""
    with ctx.uow() as uow:
        uow.session.execute(
            delete(models.IdempotencyKey).where(
                models.IdempotencyKey.tenant_id == tenant_id,
                models.IdempotencyKey.key == key,
                models.IdempotencyKey.state == KeyState.PENDING,
            )
        )
        uow.commit()
