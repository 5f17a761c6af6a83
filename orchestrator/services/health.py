"""Readiness: can this process reach everything a request or a run needs?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from orchestrator.context import Context


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    ms: float
    error: str | None = None

    def as_json(self) -> dict:
        return {"ok": self.ok, "ms": round(self.ms, 1), **({"error": self.error} if self.error else {})}


def readiness(ctx: Context) -> list[Check]:
    return [
        _timed("postgres", lambda: _postgres(ctx)),
        _timed("redis", lambda: _redis(ctx)),
        _timed("broker", lambda: _broker(ctx)),
    ]


def _timed(name: str, probe: Callable[[], None]) -> Check:
    started = time.perf_counter()
    try:
        probe()
    except Exception as error:  # any failure means "not ready"; the reason goes in the body
        return Check(name, False, (time.perf_counter() - started) * 1000, f"{type(error).__name__}: {error}")
    return Check(name, True, (time.perf_counter() - started) * 1000)


def _postgres(ctx: Context) -> None:
    with ctx.uow() as uow:
        uow.session.execute(text("SELECT 1"))


def _redis(ctx: Context) -> None:
    if not ctx.bus.ping():
        raise ConnectionError("no answer to PING")


def _broker(ctx: Context) -> None:
    ctx.queue.check()
