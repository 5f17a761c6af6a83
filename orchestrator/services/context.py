"""What a service needs from the outside world, built once per process by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import sessionmaker

from orchestrator.adapters.ports import EventBus, EventHub, RunQueue
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
    # Where file bytes live (adapters/blobs.py); None: the database, through `sessions`.
    blobs: Any = None

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    def now(self) -> int:
        return int(self.clock.now())
