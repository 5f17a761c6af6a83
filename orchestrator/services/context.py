"""What a service needs from the outside world, built once per process by the composition root."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import sessionmaker

from orchestrator.adapters.ports import EventBus, EventHub, LocalSignals, RunQueue, RunSignals
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import Clock, SystemClock
from orchestrator.settings import Settings


@dataclass
class Context:
    settings: Settings
    sessions: sessionmaker
    queue: RunQueue
    bus: EventBus
    clock: Clock = field(default_factory=SystemClock)
    # The raw Redis client where there is one (streams subscribe with it); None in the embedded mode.
    redis: Any = None
    # The subscriber stream watchers register with, where it is not a Redis hub (the embedded mode).
    hub: EventHub | None = None
    # Nudges to the worker process holding a run's lease (cancel, expiry); in-process where there is no Redis.
    signals: RunSignals = field(default_factory=LocalSignals)

    _leases: Any = field(default=None, init=False, repr=False, compare=False)
    _leases_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def leases(self):
        """The process's LeaseKeeper for this context: every turn's lease, kept together."""
        with self._leases_lock:
            if self._leases is None:
                from orchestrator.services.lease import LeaseKeeper  # it needs a context to be built

                self._leases = LeaseKeeper(self)
            return self._leases
    # Where file bytes live (adapters/blobs.py); None: the database, through `sessions`.
    blobs: Any = None

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.bus, self.clock)

    def now(self) -> int:
        return int(self.clock.now())
