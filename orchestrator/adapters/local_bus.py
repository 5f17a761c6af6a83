"""Live run events inside one process: the embedded mode's bus, which is its own hub.

Publishing hands the event straight to every watcher's inbox; deltas are also kept in a replay buffer
that lapses `replay_seconds` after a run's last delta, like the Redis list it stands in for. Watching
registers under the same lock publishing takes, so a watcher that replays the durable log right after
`watch` returns cannot miss an event between its replay and the live feed.
"""

from __future__ import annotations

import queue
import threading
import time

from orchestrator.adapters.ports import Live, new_inbox, offer


class LocalBus:
    healthy = True  # nothing to lose a connection to

    def __init__(self, replay_seconds: float):
        self._ttl = replay_seconds
        self._lock = threading.Lock()
        self._watchers: dict[str, set[queue.Queue]] = {}
        self._deltas: dict[str, tuple[float, list[dict]]] = {}

    # --- EventBus -------------------------------------------------------------------------------

    def publish(self, run_id: str, events: list[dict]) -> None:
        with self._lock:
            for event in events:
                self._fan_out(run_id, event)

    def publish_delta(self, run_id: str, event: dict) -> None:
        now = time.monotonic()
        with self._lock:
            _, buffered = self._deltas.pop(run_id, (0.0, []))
            buffered.append(event)
            self._deltas[run_id] = (now + self._ttl, buffered)  # re-inserted: the dict stays in expiry order
            self._forget_lapsed(now)
            self._fan_out(run_id, event)

    def deltas(self, run_id: str, start: int = 0, stop: int = -1) -> list[dict]:
        with self._lock:
            return _slice(self._buffer(run_id), start, stop)

    def delta_count(self, run_id: str) -> int:
        with self._lock:
            return len(self._buffer(run_id))

    def ping(self) -> bool:
        return True

    # --- EventHub -------------------------------------------------------------------------------

    def watch(self, run_id: str) -> queue.Queue:
        inbox = new_inbox()
        with self._lock:
            self._watchers.setdefault(run_id, set()).add(inbox)
        return inbox

    def unwatch(self, run_id: str, inbox: queue.Queue) -> None:
        with self._lock:
            watchers = self._watchers.get(run_id, set())
            watchers.discard(inbox)
            if not watchers:
                self._watchers.pop(run_id, None)

    def watcher_count(self) -> int:
        with self._lock:
            return sum(len(watchers) for watchers in self._watchers.values())

    # --- inside the lock ------------------------------------------------------------------------

    def _buffer(self, run_id: str) -> list[dict]:
        expires, buffered = self._deltas.get(run_id, (0.0, []))
        return buffered if expires > time.monotonic() else []

    def _fan_out(self, run_id: str, event: dict) -> None:
        watchers = self._watchers.get(run_id)
        if not watchers:
            return
        item = Live(event["seq"], event.get("prev"), event["event"], event["data"], event.get("data_json"))
        for inbox in watchers:
            offer(inbox, item)

    def _forget_lapsed(self, now: float) -> None:
        while self._deltas:
            run_id, (expires, _) = next(iter(self._deltas.items()))
            if expires > now:
                return
            del self._deltas[run_id]


def _slice(items: list, start: int, stop: int) -> list:
    """LRANGE's inclusive bounds, where -1 is the last item."""
    return items[start : None if stop == -1 else stop + 1]
