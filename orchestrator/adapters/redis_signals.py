"""Run signals over Redis pub/sub: one channel per worker process, `orch:signal:<process>`.

The API publishes a run id to the channel of the process that holds the run's lease when it cancels or
expires the run; the process's listener thread (one pub/sub connection) hands it to the LeaseKeeper, which
checks that run in the database at once instead of at its next half-second check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from orchestrator.adapters.ports import process_of

log = logging.getLogger(__name__)


def signal_channel(process: str) -> str:
    return f"orch:signal:{process}"


class RedisSignals:
    def __init__(self, client: redis.Redis, url: str):
        self._redis = client
        self._url = url

    def notify(self, owner: str, run_id: str) -> None:
        try:
            self._redis.publish(signal_channel(process_of(owner)), run_id)
        except redis.RedisError:
            log.info("could not signal the holder of %s; it notices within its check interval", run_id)

    def listen(self, process: str, on_signal: Callable[[str], None]) -> None:
        thread = threading.Thread(
            target=self._listen, args=(process, on_signal), name="run-signals", daemon=True
        )
        thread.start()

    def _listen(self, process: str, on_signal: Callable[[str], None]) -> None:
        # A connection of its own that may stay silent for ever (the shared client times reads out after
        # 5 s); the health check pings it when idle, so a dead Redis is noticed within 30 s.
        client = redis.Redis.from_url(self._url, socket_connect_timeout=2, health_check_interval=30)
        while True:
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(signal_channel(process))
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        on_signal(message["data"].decode())
            except Exception:
                # Redis is away: the keeper's database checks carry on meanwhile; subscribe again soon.
                log.info("run signal subscription lost; retrying", exc_info=True)
                time.sleep(1.0)
