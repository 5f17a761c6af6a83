"""Time, as a small port so unit tests can move it."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


_lock = threading.Lock()
_last_us = 0


def monotonic_us(now: float | None = None) -> int:
    """Microsecond timestamps that never repeat within a process: the list order tie-break."""
    global _last_us
    with _lock:
        value = int((time.time() if now is None else now) * 1_000_000)
        _last_us = max(value, _last_us + 1)
        return _last_us
