"""One Redis pub/sub connection per API process, multiplexing every stream watcher in that process.

Watchers register interest in a run; the hub's reader thread (the only one that touches the pub/sub
connection) subscribes to the run's channel once, parses each message once, and hands the same item to
every watcher's queue. `watch` returns only after Redis confirmed the subscription, so a watcher that then
replays the durable log cannot miss an event between its replay and the live feed. If Redis drops the
connection the hub reconnects, re-subscribes, and tells every watcher to resynchronise from the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time

import redis

from orchestrator.adapters.ports import RESYNC, Live, new_inbox, offer
from orchestrator.adapters.redis_bus import channel, decode_head

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, client: redis.Redis):
        self._redis = client
        self._lock = threading.Lock()
        self._watchers: dict[str, set[queue.Queue]] = {}
        self._ready: dict[str, threading.Event] = {}
        self._to_subscribe: set[str] = set()
        self._to_unsubscribe: set[str] = set()
        self._resync: set[str] = set()
        self._thread: threading.Thread | None = None
        self.healthy = True
        # A self-pipe wakes the reader at once when a watcher arrives, instead of at its next poll.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    def watch(self, run_id: str, timeout: float = 5.0) -> queue.Queue:
        inbox = new_inbox()
        with self._lock:
            self._watchers.setdefault(run_id, set()).add(inbox)
            ready = self._ready.get(run_id)
            if ready is None:
                ready = self._ready[run_id] = threading.Event()
                self._to_subscribe.add(run_id)
                self._to_unsubscribe.discard(run_id)
            self._ensure_reader()
        os.write(self._wake_w, b"x")
        # Without Redis the stream still works from the durable log, only with polling latency.
        ready.wait(timeout)
        return inbox

    def unwatch(self, run_id: str, inbox: queue.Queue) -> None:
        with self._lock:
            watchers = self._watchers.get(run_id)
            if watchers is None:
                return
            watchers.discard(inbox)
            if not watchers:
                del self._watchers[run_id]
                self._ready.pop(run_id, None)
                self._to_subscribe.discard(run_id)
                self._to_unsubscribe.add(run_id)

    def watcher_count(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._watchers.values())

    def _ensure_reader(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._read, name="redis-hub", daemon=True)
            self._thread.start()

    def _read(self) -> None:
        pubsub = None
        while True:
            try:
                if pubsub is None:
                    pubsub = self._connect()
                self._apply_changes(pubsub)
                self._wait(pubsub)
                while pubsub.subscribed and (message := pubsub.get_message(timeout=0)) is not None:
                    self._handle(message)
            except (redis.RedisError, OSError, ValueError) as error:
                log.warning("redis pub/sub lost (%s); reconnecting", error)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                pubsub = None
                self.healthy = False
                self._broadcast(RESYNC)
                time.sleep(0.5)

    def _wait(self, pubsub) -> None:
        """Sleep until Redis sends something, a watcher arrives, or a second passes."""
        connection = pubsub.connection if pubsub.subscribed else None
        if connection is not None and connection.can_read(timeout=0):
            return
        sources = [self._wake_r] + ([connection._sock] if connection is not None and connection._sock else [])
        readable, _, _ = select.select(sources, [], [], 1.0)
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)

    def _connect(self):
        pubsub = self._redis.pubsub()
        with self._lock:
            runs = list(self._watchers)
            self._to_subscribe = set(runs)
            self._to_unsubscribe.clear()
            # Anything published while we were away is in the durable log: each run's watchers resync
            # once Redis confirms the new subscription (not before, or an event could fall in between).
            self._resync.update(runs)
        return pubsub

    def _apply_changes(self, pubsub) -> None:
        with self._lock:
            subscribe, self._to_subscribe = self._to_subscribe, set()
            unsubscribe, self._to_unsubscribe = self._to_unsubscribe, set()
        if subscribe:
            pubsub.subscribe(*[channel(run_id) for run_id in subscribe])
        if unsubscribe:
            pubsub.unsubscribe(*[channel(run_id) for run_id in unsubscribe])

    def _handle(self, message: dict) -> None:
        name = message["channel"]
        run_id = (name.decode() if isinstance(name, bytes) else name).rsplit(":", 1)[-1]
        if message["type"] == "subscribe":
            self.healthy = True
            with self._lock:
                ready = self._ready.get(run_id)
                resync = run_id in self._resync
                self._resync.discard(run_id)
                inboxes = list(self._watchers.get(run_id, ())) if resync else []
            if ready is not None:
                ready.set()
            for inbox in inboxes:
                offer(inbox, RESYNC)
            return
        if message["type"] != "message":
            return
        try:
            head, data = decode_head(message["data"])
            item = Live(head["seq"], head.get("prev"), head["event"], None, raw=data)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("ignoring a malformed event on %s", run_id)
            return
        with self._lock:
            inboxes = list(self._watchers.get(run_id, ()))
        for inbox in inboxes:
            offer(inbox, item)

    def _broadcast(self, item) -> None:
        with self._lock:
            inboxes = [inbox for watchers in self._watchers.values() for inbox in watchers]
        for inbox in inboxes:
            offer(inbox, item)
