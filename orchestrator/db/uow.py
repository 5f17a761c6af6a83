"""Unit of work: one transaction that rolls back unless committed, with side effects after commit. (One
that only read ends with COMMIT, which is the same for the database and keeps psycopg's prepared
statements: db/connection.py.)

It owns the transaction's run events (`events`, an EventLog): they are stored in the transaction and
published once it has committed. The Idempotency-Key of the request it serves, if any, is written in it too
(db/idempotency_keys.py). Other side effects (enqueues) are registered with `after_commit` and run
after the events, so no task sees a row that does not exist yet and no client sees an event that was
rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Self

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.adapters.ports import EventBus
from orchestrator.db import idempotency_keys
from orchestrator.db.connection import wrote
from orchestrator.db.events import EventLog
from orchestrator.domain.clock import Clock, SystemClock
from orchestrator.domain.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class UnitOfWork:
    def __init__(
        self, session_factory: sessionmaker, bus: EventBus | None = None, clock: Clock | None = None
    ):
        self._factory = session_factory
        self._bus = bus
        self._clock = clock or SystemClock()
        self._effects: list[Callable[[], None]] = []
        self.session: Session
        self.events = EventLog()
        # What a retry of the request this transaction serves gets, when the service knows it before commit
        # (a run's creation): stored with the request's Idempotency-Key, if it sent one.
        self.outcome: idempotency_keys.Outcome | None = None

    def __enter__(self) -> Self:
        self.session = self._factory()
        self._effects = []
        self.events = EventLog()
        self.outcome = None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # close() rolls back whatever was not committed and detaches the objects without expiring them,
        # so what a service loaded stays readable after its unit of work. On a connection that died
        # mid-request that rollback raises too: the request still gets its 503, not the close's error.
        try:
            if exc_type is None and self._only_read():
                self.session.commit()  # it only read: see db/connection.py
            self.session.close()
        except DBAPIError as closing:
            if not is_outage(closing):
                raise
            self.session.invalidate()
            raise _unavailable() from (exc if is_outage(exc) else closing)
        if is_outage(exc):
            raise _unavailable() from exc

    def _only_read(self) -> bool:
        session = self.session
        if not session.in_transaction() or session.new or session.dirty or session.deleted:
            return False  # nothing to end, or ORM changes not flushed yet (they must be thrown away)
        return not wrote(session)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    def commit(self) -> None:
        now = self._clock.now()
        self.events.flush(self.session, now)
        key = idempotency_keys.current()  # the request's Idempotency-Key goes in with its change
        wrote_key = key is not None and key.write(self.session, now, self.outcome)
        self.session.commit()
        if wrote_key:
            key.recorded = True
        stored = self.events.committed()
        if self._bus is not None:
            try:
                self.events.publish(self._bus, stored)
            except Exception:
                # Committed: watchers that missed the live copy find the events in the log.
                log.warning("publishing run events failed", exc_info=True)
        effects, self._effects = self._effects, []
        for effect in effects:
            try:
                effect()
            except Exception:
                # The state is committed; a lost side effect is recovered by the scheduler's sweeps.
                log.warning("after-commit effect failed", exc_info=True)


def is_outage(exc: BaseException | None) -> bool:
    """Whether a database error says the database is away (a lost connection, a restart, a timeout: a
    retry may succeed), not that this statement can never succeed (a value or row it refuses)."""
    if not isinstance(exc, DBAPIError):
        return False
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The database is unavailable; try again shortly.")
