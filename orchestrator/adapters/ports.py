"""The small interfaces services depend on. Real adapters and in-memory fakes both satisfy them."""

from __future__ import annotations

import contextlib
import functools
import json
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# What a watcher's inbox receives besides `Live` items: "your feed had a gap, re-read the durable log".
RESYNC = "resync"


def event_json(data: dict) -> str:
    """An event's data as every copy of it carries it (the log, Redis, the SSE frame): compact, UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, eq=False)
class Live:
    """One event as a live watcher receives it."""

    seq: int
    prev: int | None  # the last lifecycle event that precedes this one (for a delta: its block's)
    event: str
    data: dict | None  # None when it came already encoded (`raw`)
    raw: str | None = None  # the data's JSON as it came over the wire

    @functools.cached_property
    def data_json(self) -> str:
        """The data encoded once, however many watchers relay it."""
        if self.raw is not None:
            return self.raw
        return event_json(self.data)


class RunQueue(Protocol):
    def enqueue(self, run_id: str) -> None:
        """Ask a worker to advance the run. At-least-once; a duplicate is harmless."""

    def depth(self) -> int | None:
        """Tasks waiting (not those a worker holds); None where the queue cannot say."""

    def check(self) -> None:
        """Raise when the queue cannot take tasks now (readiness)."""

    def enqueue_ingestion(self, chunk_set_id: str) -> None:
        """Ask a worker to ingest a chunk set (parse, chunk, embed). At-least-once; a duplicate is harmless."""

    def ingestion_depth(self) -> int | None:
        """Ingestion tasks waiting; None where the queue cannot say."""


class EventBus(Protocol):
    def publish(self, run_id: str, events: list[dict]) -> None:
        """Fan out already-committed events ({"seq", "event", "data"}) to live watchers."""

    def publish_delta(self, run_id: str, event: dict) -> None:
        """Fan out a delta and keep it in the short replay buffer. Best effort: never blocks on the
        network and never raises; a delta published after `publish` goes out after those events."""

    def ping(self) -> bool: ...

    def deltas(self, run_id: str, start: int = 0, stop: int = -1) -> list[dict]:
        """The run's buffered deltas from index `start` to `stop` inclusive (-1: the last), oldest
        first, like LRANGE (empty when unavailable)."""

    def delta_count(self, run_id: str) -> int:
        """How many deltas the replay buffer holds for the run (0 when unavailable)."""


class EventHub(Protocol):
    """A process's subscriber side of the bus: stream watchers register here and get `Live` items (or
    RESYNC) in their inbox."""

    healthy: bool

    def watch(self, run_id: str) -> queue.Queue:
        """Register interest; returns once no event published afterwards can be missed."""

    def unwatch(self, run_id: str, inbox: queue.Queue) -> None: ...


class RunSignals(Protocol):
    """A nudge to the worker process holding a run's lease: "look at this run now" (it was cancelled or
    expired). It carries no authority: the worker reads the run's status from the database, and checks
    every held run there anyway at a fixed interval, so a lost nudge only costs that interval."""

    def notify(self, owner: str, run_id: str) -> None:
        """Best effort, after commit; `owner` is the run's lease owner token."""

    def listen(self, process: str, on_signal: Callable[[str], None]) -> None:
        """Call `on_signal(run_id)` for every nudge to runs this process's owner tokens hold."""


def process_of(owner: str) -> str:
    """The process part of a lease owner token (`<process>/<turn>`)."""
    return owner.rpartition("/")[0]


class LocalSignals:
    """Signals within one process: the embedded mode and tests."""

    def __init__(self) -> None:
        self._listeners: dict[str, Callable[[str], None]] = {}

    def notify(self, owner: str, run_id: str) -> None:
        listener = self._listeners.get(process_of(owner))
        if listener is not None:
            listener(run_id)

    def listen(self, process: str, on_signal: Callable[[str], None]) -> None:
        self._listeners[process] = on_signal


class InMemoryQueue:
    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.ingestions: list[str] = []

    def enqueue(self, run_id: str) -> None:
        self.enqueued.append(run_id)

    def enqueue_ingestion(self, chunk_set_id: str) -> None:
        self.ingestions.append(chunk_set_id)

    def depth(self) -> int | None:
        return None

    def ingestion_depth(self) -> int | None:
        return None

    def check(self) -> None:
        pass


class InMemoryBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict]] = []

    def publish(self, run_id: str, events: list[dict]) -> None:
        self.published.extend((run_id, event) for event in events)

    def publish_delta(self, run_id: str, event: dict) -> None:
        self.published.append((run_id, event))

    def ping(self) -> bool:
        return True

    def deltas(self, run_id: str, start: int = 0, stop: int = -1) -> list[dict]:
        buffered = [e for r, e in self.published if r == run_id and e["event"].endswith(".delta")]
        return buffered[start : None if stop == -1 else stop + 1]

    def delta_count(self, run_id: str) -> int:
        return len(self.deltas(run_id))


# The most items a watcher's inbox holds. Only a watcher that stopped reading (its client stalled with
# the connection open) gets near it; see `offer`.
INBOX_LIMIT = 1000


def new_inbox(maxsize: int | None = None) -> queue.Queue:
    """A watcher's inbox. Under gevent (the api's gunicorn workers) gevent's own queue, which wakes a
    greenlet several times more cheaply than the monkey-patched stdlib queue: one event is put into the
    inbox of every watcher of the run."""
    maxsize = INBOX_LIMIT if maxsize is None else maxsize
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return queue.Queue(maxsize)
    if monkey.is_module_patched("threading"):
        import gevent.queue

        return gevent.queue.Queue(maxsize)
    return queue.Queue(maxsize)


def offer(inbox: queue.Queue, item) -> None:
    """Put without ever blocking the publisher. A full inbox belongs to a watcher that stopped reading:
    rather than hold every later event for it, empty it and leave RESYNC, since what it missed is in the
    durable log and the delta replay buffer, and it re-reads them when its client reads again."""
    try:
        inbox.put_nowait(item)
    except queue.Full:
        mutex = getattr(inbox, "mutex", None)
        if mutex is not None:
            # The stdlib queue (threads, the embedded mode): empty it and leave RESYNC under its own lock.
            # Item by item, the watcher could take a later event in between and skip the earlier ones.
            with mutex:
                inbox.queue.clear()
                inbox.queue.append(RESYNC)
                inbox.not_empty.notify()
            return
        # gevent's queue: nothing here switches greenlets, so no one reads in between.
        with contextlib.suppress(queue.Empty):
            while True:
                inbox.get_nowait()
        inbox.put_nowait(RESYNC)
