"""Relaying a run's events to one watcher: subscribe, replay after the cursor, then relay live events,
de-duplicated by sequence number, filling any gap from the durable log.

The stream ends (with DONE) after the event that ends this leg of the run: a terminal status, or
`requires_action` (the client submits tool outputs and opens the next leg), exactly like OpenAI's streams.
The relay yields events and markers, not bytes: how they look on the wire is api/sse.py's.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from sqlalchemy.exc import SQLAlchemyError

from orchestrator.adapters.ports import RESYNC, EventHub, Live
from orchestrator.context import Context
from orchestrator.domain.errors import ServiceUnavailable
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.engine.responses import wire as response_wire
from orchestrator.services.backlog import backlog, latest_event, leg_ended_by

log = logging.getLogger(__name__)

LEG_ENDS = frozenset(s.event for s in RunStatus if s.is_terminal) | {RunStatus.REQUIRES_ACTION.event}


@dataclass(frozen=True)
class Rules:
    """How a face's stream ends, and whether every event of it is in the log (a Response's deltas are:
    each accounts for every event before it) or deltas are best effort (a thread's run's)."""

    ends: frozenset[str]
    durable: bool = False


RUN = Rules(LEG_ENDS)
RESPONSE = Rules(response_wire.TERMINAL_EVENTS, durable=True)


class Stored(NamedTuple):
    """An event read from the log (or the request's own, from memory); `data` is an object or its JSON."""

    seq: int
    event: str
    data: Any


class Marker(Enum):
    # The generator is about to wait (on the inbox or the database): send what you have.
    FLUSH = "flush"
    # The stream has been quiet for a keep-alive interval.
    KEEPALIVE = "keep-alive"
    # This leg of the run has ended: nothing follows.
    DONE = "done"


FLUSH, KEEPALIVE, DONE = Marker.FLUSH, Marker.KEEPALIVE, Marker.DONE
# What the relay yields: a live event (shared by every watcher of the run), a stored one, or a marker.
Item = Live | Stored | Marker


def relay(
    ctx: Context,
    hub: EventHub,
    run_id: str,
    cursor: int,
    *,
    inbox: queue.Queue | None = None,
    first: Sequence[dict] = (),
    rules: Rules = RUN,
) -> Iterator[Item]:
    """The run's events after `cursor` until this leg ends. `inbox`: a subscription opened before any event
    after `first` could be committed (the request's own change, subscribed before it committed): the stream
    then starts with `first` and reads nothing back from the log."""
    inbox = inbox if inbox is not None else hub.watch(run_id)
    _ticker.add(inbox)
    try:
        yield from _Watcher(ctx, hub, run_id, cursor, inbox, first, rules).items()
    finally:
        _ticker.discard(inbox)
        hub.unwatch(run_id, inbox)


TICK = "tick"


class _Ticker:
    """Puts TICK into every watcher's inbox once a second, so a watcher can block on its inbox without a
    timer of its own: a timed wait costs as much again as the delivery itself when one event goes out to a
    thousand watchers. Ticks drive keep-alives and, while the live feed is down, polling the log."""

    def __init__(self, period: float = 1.0):
        self._period = period
        self._inboxes: set = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, inbox) -> None:
        with self._lock:
            self._inboxes.add(inbox)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="stream-ticker", daemon=True)
                self._thread.start()

    def discard(self, inbox) -> None:
        with self._lock:
            self._inboxes.discard(inbox)

    def _run(self) -> None:
        while True:
            time.sleep(self._period)
            with self._lock:
                inboxes = list(self._inboxes)
            for inbox in inboxes:
                if inbox.empty():  # a watcher with items waiting wakes anyway; a stalled one needs no more
                    with contextlib.suppress(queue.Full):
                        inbox.put_nowait(TICK)


_ticker = _Ticker()


class _Watcher:
    """`cursor` is the last event sent. `known` bounds the durable events already accounted for: every
    lifecycle event at or below it was sent, or precedes the client's cursor. Every live item carries
    `prev`, the last lifecycle event that must precede it (for a delta: the one before its block); an
    item whose `prev` is beyond `known` waits until the durable log has been read up to it."""

    def __init__(
        self,
        ctx: Context,
        hub: EventHub,
        run_id: str,
        cursor: int,
        inbox: queue.Queue,
        first: Sequence[dict] = (),
        rules: Rules = RUN,
    ):
        self.ctx, self.hub, self.run_id, self.inbox = ctx, hub, run_id, inbox
        self.cursor = self.known = cursor
        self.first, self.rules = first, rules
        self.ended = False

    def items(self) -> Iterator[Item]:
        if self.first:
            # The request's own events, and it subscribed before anything after them could happen.
            for event in self.first:
                if out := self._emit(event["seq"], event["event"], event.get("data_json") or event["data"]):
                    yield out
        else:
            yield from self._catch_up()
            if not self.ended and leg_ended_by(self.ctx, self.run_id, self.cursor, self.rules.ends):
                self.ended = True  # resumed at or past the event that ended this leg: nothing will follow
        self.quiet_since = time.monotonic()
        while not self.ended:
            if self.inbox.empty():
                yield FLUSH
            item = self.inbox.get()
            if type(item) is Live and item.seq > self.cursor and (item.prev or 0) <= self.known:
                # The common case, a live event in order, without a generator per item: this runs once
                # per event for every watcher of the run.
                self.quiet_since = time.monotonic()
                yield self._emit(item.seq, item.event, item)
            else:
                yield from self._take(item)
        yield DONE

    def _take(self, item) -> Iterator[Item]:
        """What one inbox item produces."""
        if item == TICK:
            cursor = self.cursor
            if not self.hub.healthy:
                yield from self._catch_up()  # no live feed: poll the durable log
            if self.cursor == cursor:  # nothing was sent
                if time.monotonic() - self.quiet_since < self.ctx.settings.keepalive_seconds:
                    return
                yield from self._look_in_the_log()
                if self.cursor == cursor:
                    yield KEEPALIVE
            self.quiet_since = time.monotonic()
            return
        if item == RESYNC:
            yield from self._catch_up()
        elif isinstance(item, Live):
            yield from self._live(item)
        self.quiet_since = time.monotonic()

    def _live(self, item: Live) -> Iterator[Item]:
        if item.seq <= self.cursor:
            return
        if (item.prev or 0) > self.known:
            yield from self._catch_up()  # something durable before this item has not reached us: read the log
            if item.seq <= self.cursor or (item.prev or 0) > self.known:
                return
        if out := self._emit(item.seq, item.event, item):
            yield out

    def _look_in_the_log(self) -> Iterator[Item]:
        """Once per keep-alive interval of silence: an event committed but never published (its writer
        died between the two) would otherwise leave the stream waiting for ever. One small read."""
        try:
            latest = latest_event(self.ctx, self.run_id)
        except (ServiceUnavailable, SQLAlchemyError):
            return  # the database is away or busy: keep the stream open, look again next interval
        if latest is not None and latest[0] > self.known:
            yield from self._catch_up()

    def _catch_up(self) -> Iterator[Item]:
        yield FLUSH  # what is collected goes out before the database is read
        # Paged: the next page is read only once this generator is resumed, that is once the socket took
        # what came before, so a stalled client holds one page, not the run.
        for seq, event, data in backlog(self.ctx, self.run_id, self.cursor, lambda: self.known):
            if self.ended:
                return
            if out := self._emit(seq, event, data):
                yield out

    def _emit(self, seq: int, event: str, data: dict | str | Live) -> Live | Stored | None:
        """The event to send, or None when it was sent already or the leg has ended."""
        if seq <= self.cursor or self.ended:
            return None
        self.cursor = seq
        if self.rules.durable or not event.endswith(".delta"):
            self.known = seq
        if event in self.rules.ends:
            self.ended = True
        return data if isinstance(data, Live) else Stored(seq, event, data)
