"""What a worker records around one turn of a run: its ids on every log line, and its duration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

from orchestrator.domain.errors import StaleWrite
from orchestrator.observability import logs
from orchestrator.observability.metrics import instruments, lease_takeovers

log = logs.get(__name__)


def record_takeovers(count: int) -> None:
    """Leases this process took over from a holder that died or stalled (after the claim committed). Also
    called with 0 where turns start to run, so the count is exported (as 0) from then on."""
    counter = lease_takeovers()
    if count:
        counter.inc(count)
        log.warning("took over a lapsed lease", count=count)


@contextmanager
def observed_turn(run: Any) -> Iterator[None]:
    """Bind the run's ids (the step's are added when it opens), time the turn and log one line when it
    ends; the log context is restored afterwards, so nothing leaks into the next task on the thread."""
    saved = get_contextvars()
    logs.bind(run_id=run.id, tenant_id=run.tenant_id, thread_id=run.thread_id, api=run.api.value)
    started, outcome = time.perf_counter(), "ok"
    try:
        yield
    except StaleWrite:
        outcome = "lease_lost"
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        elapsed = time.perf_counter() - started
        instruments().turn_latency.labels(run.api.value, outcome).observe(elapsed)
        log.info("turn ended", outcome=outcome, ms=round(elapsed * 1000, 1))
        clear_contextvars()
        bind_contextvars(**saved)
