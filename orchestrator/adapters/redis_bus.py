"""Live run events over Redis pub/sub, plus a short replay buffer for deltas (which are not in Postgres).

Every event a process publishes goes through one FIFO and out in pipelines, so hundreds of turns streaming
deltas at once cost a round trip per batch, not per delta (one delta alone costs ~190 µs of CPU in
redis-py; a batch of 100 ~28 µs each). Deltas are best effort: they are queued and a flusher thread (a
greenlet under gevent) sends what has gathered whenever it runs. Lifecycle events are already committed
when they are published: `publish` sends everything queued before them and them, and returns once Redis
has them, so an event never overtakes the deltas that precede it, and a process stopping after a turn
has published its last events.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

import redis

from orchestrator.adapters.ports import event_json

log = logging.getLogger(__name__)

# After a failed flush, deltas are dropped for this long rather than stall every turn on a Redis that is
# away; the durable events still carry the final objects, and watchers resynchronise from the log.
QUIET_SECONDS = 5.0


def channel(run_id: str) -> str:
    return f"orch:run:{run_id}"


def delta_key(run_id: str) -> str:
    return f"orch:run:{run_id}:deltas"


def encode(event: dict) -> str:
    """An event as it goes over Redis: a small header line, then the data's JSON exactly as an SSE frame
    carries it, so the api's hub parses only the header and relays the data as it came (JSON escapes
    every newline inside strings, so the first newline ends the header). An event from the log carries
    its data already encoded (`data_json`, db/events.py)."""
    head = json.dumps(
        {"seq": event["seq"], "prev": event.get("prev"), "event": event["event"]}, separators=_COMPACT
    )
    return head + "\n" + (event.get("data_json") or event_json(event["data"]))


_COMPACT = (",", ":")


def decode_head(payload: str | bytes) -> tuple[dict, str]:
    """(the header: seq, prev, event; the data's JSON text). A payload of one JSON object (published by an
    older release during an upgrade) is taken too."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    head, newline, data = text.partition("\n")
    if not newline:
        whole = json.loads(text)
        return whole, event_json(whole["data"])
    return json.loads(head), data


def decode(payload: str | bytes) -> dict:
    head, data = decode_head(payload)
    return {"seq": head["seq"], "prev": head.get("prev"), "event": head["event"], "data": json.loads(data)}


class RedisBus:
    def __init__(self, client: redis.Redis, replay_seconds: int):
        self._redis = client
        self._ttl = replay_seconds
        # (run_id, payload, is_delta) in publication order; taken only under `_sending`.
        self._pending: deque[tuple[str, str, bool]] = deque()
        self._sending = threading.Lock()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._quiet_until = 0.0

    def publish(self, run_id: str, events: list[dict]) -> None:
        self._pending.extend((run_id, encode(event), False) for event in events)
        self._flush(raise_errors=True)

    def publish_delta(self, run_id: str, event: dict) -> None:
        if time.monotonic() < self._quiet_until:
            return
        self._pending.append((run_id, encode(event), True))
        if self._flusher is None:
            self._start_flusher()
        self._wake.set()

    def deltas(self, run_id: str, start: int = 0, stop: int = -1) -> list[dict]:
        try:
            return [decode(entry) for entry in self._redis.lrange(delta_key(run_id), start, stop)]
        except redis.RedisError:
            return []

    def delta_count(self, run_id: str) -> int:
        try:
            return int(self._redis.llen(delta_key(run_id)))
        except redis.RedisError:
            return 0

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def _start_flusher(self) -> None:
        with self._sending:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="delta-flusher", daemon=True
                )
                self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self._flush(raise_errors=False)
            except Exception:  # never let the flusher die: later deltas would queue for ever
                log.warning("delta flush failed", exc_info=True)

    def _flush(self, *, raise_errors: bool) -> None:
        with self._sending:
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            if not batch:
                return
            try:
                self._send(batch)
            except redis.RedisError:
                if any(not is_delta for _run, _payload, is_delta in batch):
                    raise
                self._quiet_until = time.monotonic() + QUIET_SECONDS
                log.warning("delta publish failed; dropping deltas for %.0f s", QUIET_SECONDS)
                if raise_errors:
                    raise

    def _send(self, batch: list[tuple[str, str, bool]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        buffered: dict[str, list[str]] = {}
        for run_id, payload, is_delta in batch:
            if is_delta:
                buffered.setdefault(run_id, []).append(payload)
        for run_id, payloads in buffered.items():
            pipe.rpush(delta_key(run_id), *payloads)
            pipe.expire(delta_key(run_id), self._ttl)
        # The replay buffer first: a watcher that reads it after a live delta finds that delta there too.
        for run_id, payload, _is_delta in batch:
            pipe.publish(channel(run_id), payload)
        pipe.execute()


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30, retry_on_timeout=False
    )
