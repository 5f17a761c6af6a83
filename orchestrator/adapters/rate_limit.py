"""Request-rate counters per tenant: GCRA (the generic cell rate algorithm, a token bucket kept as one
number, the "theoretical arrival time"), in Redis so every API process on every host shares one budget,
or in this process for the embedded mode.

A tenant limited to R requests per second may send a burst of max(1, R) at once, then R per second.
`admit` answers 0 when the request is admitted, else how many seconds until one would be.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

import redis

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def admit(self, tenant_id: str, rate: float) -> float:
        """Count one request against `rate` per second; 0 if admitted, else the seconds to wait."""


def _burst(rate: float) -> int:
    return max(1, math.ceil(rate))


def gcra(tat: float, now: float, rate: float) -> tuple[float, float]:
    """(the new theoretical arrival time, the wait): the wait is 0 when the request is admitted, and then
    the new time is the one to keep."""
    interval = 1.0 / rate
    tat = max(tat, now)
    wait = tat + interval - _burst(rate) * interval - now
    return (tat + interval, 0.0) if wait <= 1e-9 else (tat, wait)


# The same arithmetic as `gcra`, atomically in Redis, on Redis' clock (shared by every API host).
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = 1 / rate
local wait = tat + interval - burst * interval - now
if wait > 0.000000001 then return tostring(wait) end
redis.call('SET', KEYS[1], string.format('%.6f', tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    """With Redis unreachable, requests are admitted (and a warning logged at most every 10 s): the limit
    protects tenants from each other, and refusing everyone because its counter is down would turn a
    Redis outage into an API outage; Postgres and the run engine stay the source of truth either way."""

    def __init__(self, client: redis.Redis):
        self._script = client.register_script(_SCRIPT)
        self._warned = 0.0

    def admit(self, tenant_id: str, rate: float) -> float:
        try:
            return float(self._script(keys=[f"orch:rate:{tenant_id}"], args=[repr(rate), _burst(rate)]))
        except redis.RedisError as error:
            if time.monotonic() - self._warned > 10:
                self._warned = time.monotonic()
                log.warning("rate limit not enforced: redis unavailable (%s)", error)
            return 0.0


class LocalRateLimiter:
    """The same counters in this process (the embedded mode: one process is the whole deployment)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, tenant_id: str, rate: float) -> float:
        with self._lock:
            tat, wait = gcra(self._tat.get(tenant_id, 0.0), time.monotonic(), rate)
            self._tat[tenant_id] = tat
            return wait
