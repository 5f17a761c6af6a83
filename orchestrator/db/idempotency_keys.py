"""Idempotency keys' rows: the key a request carries, written by the transactions that make its change
(services/idempotency.py tells the design), and the sweep's statement.

    bind(RequestKey(...))        the API, before the view: this request's commits carry the key
    UnitOfWork.commit()          calls `RequestKey.write` before COMMIT: the request's first commit inserts
                                 the key's row (pending, or with the outcome the unit of work declares);
                                 a later one whose unit of work declares an outcome updates it
    unbind(token)                the API, once the request's outcome is known
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.domain.errors import IdempotencyKeyTaken

TTL = 24 * 3600.0


class KeyState(StrEnum):
    PENDING = "pending"  # its request's change committed; the response is not stored (yet)
    COMPLETED = "completed"  # its response is stored
    STREAM = "stream"  # it streamed a run: `headers` holds the run and the cursor the stream started at


@dataclass(frozen=True)
class Outcome:
    """What a retry of the request gets: a stored response, or the stream of a run."""

    state: KeyState
    status: int | None = None
    body: str | None = None
    headers: dict[str, Any] | None = None


@dataclass
class RequestKey:
    """The key of the request being served, and whether a committed transaction holds its row."""

    tenant_id: str
    key: str
    request_hash: str
    recorded: bool = False

    def write(self, session: Session, now: float, outcome: Outcome | None) -> bool:
        """In a transaction about to commit: insert the key's row (the request's first commit), or store
        the `outcome` its unit of work declares (a later one). True when it wrote; the caller sets
        `recorded` once the transaction committed. Raises IdempotencyKeyTaken when another request's
        transaction holds the key (on Postgres, after waiting for that transaction to end)."""
        if self.recorded:
            if outcome is not None:
                store(session, self.tenant_id, self.key, outcome)
            return outcome is not None
        values = {"state": KeyState.PENDING} if outcome is None else _values(outcome)
        row = {"tenant_id": self.tenant_id, "key": self.key, "request_hash": self.request_hash}
        try:
            session.execute(insert(models.IdempotencyKey).values(**row, created_at=now, **values))
        except IntegrityError:
            raise IdempotencyKeyTaken(self.key) from None
        return True


_current: ContextVar[RequestKey | None] = ContextVar("idempotency_key", default=None)


def bind(key: RequestKey) -> Token:
    return _current.set(key)


def unbind(token: Token) -> None:
    _current.reset(token)


def current() -> RequestKey | None:
    """The key of the request this code serves, if it sent one."""
    return _current.get()


def store(session: Session, tenant_id: str, key: str, outcome: Outcome) -> None:
    session.execute(
        update(models.IdempotencyKey)
        .where(models.IdempotencyKey.tenant_id == tenant_id, models.IdempotencyKey.key == key)
        .values(**_values(outcome))
    )


def _values(outcome: Outcome) -> dict[str, Any]:
    return {
        "state": outcome.state,
        "status": outcome.status,
        "body": outcome.body,
        "headers": outcome.headers,
    }


def purge(session: Session, now: float) -> int:
    """Delete the keys older than TTL; returns how many."""
    return session.execute(
        delete(models.IdempotencyKey).where(models.IdempotencyKey.created_at < now - TTL)
    ).rowcount
