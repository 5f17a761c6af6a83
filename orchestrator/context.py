"""What a service needs from the outside world, built once per process by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import sessionmaker

from orchestrator.adapters.ports import EventBus, EventHub, LocalSignals, RunQueue, RunSignals
from orchestrator.adapters.rate_limit import LocalRateLimiter, RateLimiter
from orchestrator.db.blobs import BlobStore, DatabaseBlobStore, DirectoryBlobStore
from orchestrator.db.keeper import LeaseKeeper
from orchestrator.db.tenants import LimitsCache
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import Clock, SystemClock
from orchestrator.sandbox.factory import make_sandbox
from orchestrator.sandbox.port import CodeSandbox
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
    # Where file bytes live (db/blobs.py); by default the settings' directory, else the database.
    blobs: BlobStore | None = None
    # code_interpreter's sandbox: the service's client, or the jail in this process (sandbox/factory.py).
    sandbox: CodeSandbox | None = None

    # What the context builds itself, once, from the above: the process's heartbeat for the leases its
    # turns hold, and its cache of tenants' limits.
    leases: LeaseKeeper = field(init=False, repr=False, compare=False)
    tenant_limits: LimitsCache = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.blobs is None:
            directory = self.settings.files_dir
            self.blobs = DirectoryBlobStore(directory) if directory else DatabaseBlobStore(self.sessions)
        if self.sandbox is None:
            self.sandbox = make_sandbox(self.settings)
        self.leases = LeaseKeeper(self.uow, self.signals, self.clock, self.settings.lease_seconds)
        self.tenant_limits = LimitsCache(self.uow)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.bus, self.clock)

    def timestamp(self) -> int:
        """Whole unix seconds, as the API shows times (`created_at`, …); `clock.now()` is the precise float."""
        return int(self.clock.now())
