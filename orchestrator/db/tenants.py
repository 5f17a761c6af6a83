"""Tenants' limits as the hot path reads them: a request rate (the API) and a number of active runs (the
engine's dispatch). 0 means no limit; a tenant nobody set limits for has none."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.db.uow import UnitOfWork


@dataclass(frozen=True)
class Limits:
    requests_per_second: float = 0.0
    max_active_runs: int = 0


NO_LIMITS = Limits()


def read(session: Session, tenant_id: str) -> Limits:
    row = session.get(models.TenantLimits, tenant_id)
    return Limits(row.requests_per_second, row.max_active_runs) if row else NO_LIMITS


class LimitsCache:
    """Tenant → limits, re-read at most every `ttl` seconds: a change from the CLI reaches every process
    within that long, and the hot path does not read Postgres on every request. One per process."""

    def __init__(self, uow: Callable[[], UnitOfWork], ttl: float = 5.0):
        self._uow, self._ttl = uow, ttl
        self._cache: dict[str, tuple[Limits, float]] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str, session: Session | None = None) -> Limits:
        """Read in the caller's transaction when it is in one (on SQLite a second transaction would wait
        for the first's write lock for ever)."""
        with self._lock:
            cached = self._cache.get(tenant_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        if session is not None:
            limits = read(session, tenant_id)
        else:
            with self._uow() as uow:
                limits = read(uow.session, tenant_id)
        with self._lock:
            self._cache[tenant_id] = (limits, time.monotonic() + self._ttl)
        return limits
