"""kombu's Redis transport, keeping one client per channel for its synchronous calls.

kombu builds a new `redis.Redis` for every publish and every ack (`Channel._create_client`), and redis-py's
constructor registers about 170 response callbacks each time: measured, 320 µs of CPU of the 800 µs an
enqueue costs, more than the LPUSH itself. The client is only a handle on the channel's connection pool,
so one serves every call as safely as a new one each time. Celery takes it as `broker_transport`, for `redis://` brokers (`transport_for`).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

NAME = "orchestrator.adapters.kombu_redis:Transport"


def transport_for(broker_url: str) -> str | None:
    """This transport for a plain `redis://` broker; None (kombu's choice by scheme) for any other: kombu
    turns TLS on for `rediss://` only when the scheme picks the transport, and `sentinel://` has its own."""
    return NAME if broker_url.startswith("redis://") else None


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._sync_client is None:
            self._sync_client = super()._create_client()
        return self._sync_client

    def _disconnect_pools(self):
        self._sync_client = None  # it holds the pool being dropped (after a fork, at close)
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel
