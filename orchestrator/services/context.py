"""What a service needs from the outside world, built once per process by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import sessionmaker

from orchestrator.adapters.ports import EventBus, EventHub, LocalSignals, RunQueue, RunSignals
from orchestrator.adapters.rate_limit import LocalRateLimiter, RateLimiter
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
    # The subscriber side of the bus that stream watchers register with (api processes); None where nothing
    # streams (one-shot CLI commands, the worker).
    hub: EventHub | None = None
    # Tenants' request-rate counters: Redis' where there is one (shared by every api process).
    rate_limiter: RateLimiter = field(default_factory=LocalRateLimiter)
    # Nudges to the worker process holding a run's lease (cancel, expiry); in-process where there is no Redis.
    signals: RunSignals = field(default_factory=LocalSignals)
    # Where file bytes live (db/blobs.py); None: the database, through `sessions`.
    blobs: Any = None
    # code_interpreter's sandbox (orchestrator/sandbox), made on first use by `hosted.sandbox(ctx)`.
    sandbox: Any = None

    # The process's LeaseKeeper for this context, made on first use by `lease.keeper(ctx)`.
    leases: Any = field(default=None, init=False, repr=False, compare=False)
    # The process's cache of tenants' limits, made on first use by `dispatch.limits(ctx)`.
    tenant_limits: Any = field(default=None, init=False, repr=False, compare=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.bus, self.clock)

    def timestamp(self) -> int:
        """Whole unix seconds, as the API shows times (`created_at`, …); `clock.now()` is the precise float."""
        return int(self.clock.now())
