"""Relaying a run's events to one watcher: subscribe, replay after the cursor, then relay live events,
de-duplicated by sequence number, filling any gap from the durable log.

The stream ends (with `done`) after the event that ends this leg of the run: a terminal status, or
`requires_action` (the client submits tool outputs and opens the next leg), exactly like OpenAI's streams.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence

from sqlalchemy.exc import SQLAlchemyError

from orchestrator.adapters.ports import RESYNC, EventHub, Live, event_json
from orchestrator.context import Context
from orchestrator.domain.errors import ServiceUnavailable
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.services.backlog import backlog, latest_event, leg_ended_by

log = logging.getLogger(__name__)

LEG_ENDS = frozenset(s.event for s in RunStatus if s.is_terminal) | {RunStatus.REQUIRES_ACTION.event}
DONE = b"event: done\ndata: [DONE]\n\n"
# A comment line with no empty line of its own (contract §4.6): the SDK's decoder keeps the last `id:` and
# dispatches an event at every empty line once it has one, so ": keep-alive\n\n" reads to it as an event
# with empty data and kills its stream (`json.loads("")`). The next frame's empty line ends this one.
KEEPALIVE = b": keep-alive\n"
# The most one write carries when frames are waiting (a replay, or a watcher that fell behind): large
# enough to cut writes and wake-ups by orders of magnitude, small enough that the client sees progress.
WRITE_LIMIT = 64 * 1024


def frame(seq: int, event: str, data: dict | str) -> bytes:
    """One SSE frame; `data` is an object, or its JSON text already encoded."""
    text = data if isinstance(data, str) else event_json(data)
    return f"id: {seq}\nevent: {event}\ndata: {text}\n\n".encode()


@functools.lru_cache(maxsize=4096)
def _shared_frame(item: Live) -> bytes:
    """A live event's frame, encoded once for every watcher of the run (Live hashes by identity)."""
    return frame(item.seq, item.event, item.data_json)


def relay(
    ctx: Context,
    hub: EventHub,
    run_id: str,
    cursor: int,
    *,
    inbox: queue.Queue | None = None,
    first: Sequence[dict] = (),
) -> Iterator[bytes]:
    """The run's events after `cursor` until this leg ends. `inbox`: a subscription opened before any event
    after `first` could be committed (the request's own change, subscribed before it committed): the stream
    then starts with `first` and reads nothing back from the log."""
    inbox = inbox if inbox is not None else hub.watch(run_id)
    _ticker.add(inbox)
    try:
        yield from _writes(_Watcher(ctx, hub, run_id, cursor, inbox, first).frames())
    finally:
        _ticker.discard(inbox)
        hub.unwatch(run_id, inbox)


TICK = "tick"
# From the frame generator: it is about to wait (on the inbox or the database), so send what you have.
FLUSH = b""


def _writes(frames: Iterator[bytes]) -> Iterator[bytes]:
    """Join consecutive frames into writes of up to WRITE_LIMIT bytes, sending at every FLUSH. A watcher that
    keeps up sends each live event on its own; one that fell behind (a burst of deltas to many watchers)
    sends what is waiting in a few writes, which is what keeps a saturated process from falling further
    behind."""
    pending: list[bytes] = []
    size = 0
    for piece in frames:
        if piece:
            pending.append(piece)
            size += len(piece)
            if size < WRITE_LIMIT:
                continue
        if pending:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


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
    ):
        self.ctx, self.hub, self.run_id, self.inbox = ctx, hub, run_id, inbox
        self.cursor = self.known = cursor
        self.first = first
        self.ended = False

    def frames(self) -> Iterator[bytes]:
        if self.first:
            # The request's own events, and it subscribed before anything after them could happen.
            for event in self.first:
                if out := self._emit(event["seq"], event["event"], event.get("data_json") or event["data"]):
                    yield out
        else:
            yield from self._catch_up()
            if not self.ended and leg_ended_by(self.ctx, self.run_id, self.cursor, LEG_ENDS):
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

    def _take(self, item) -> Iterator[bytes]:
        """The frames one inbox item produces."""
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

    def _live(self, item: Live) -> Iterator[bytes]:
        if item.seq <= self.cursor:
            return
        if (item.prev or 0) > self.known:
            yield from self._catch_up()  # something durable before this item has not reached us: read the log
            if item.seq <= self.cursor or (item.prev or 0) > self.known:
                return
        if out := self._emit(item.seq, item.event, item):
            yield out

    def _look_in_the_log(self) -> Iterator[bytes]:
        """Once per keep-alive interval of silence: an event committed but never published (its writer
        died between the two) would otherwise leave the stream waiting for ever. One small read."""
        try:
            latest = latest_event(self.ctx, self.run_id)
        except (ServiceUnavailable, SQLAlchemyError):
            return  # the database is away or busy: keep the stream open, look again next interval
        if latest is not None and latest[0] > self.known:
            yield from self._catch_up()

    def _catch_up(self) -> Iterator[bytes]:
        yield FLUSH  # what is collected goes out before the database is read
        # Paged: the next page is read only once this generator is resumed, that is once the socket took
        # what came before, so a stalled client holds one page, not the run.
        for seq, event, data in backlog(self.ctx, self.run_id, self.cursor, lambda: self.known):
            if self.ended:
                return
            if out := self._emit(seq, event, data):
                yield out

    def _emit(self, seq: int, event: str, data: dict | str | Live) -> bytes | None:
        """The event's frame, or None when it was sent already or the leg has ended."""
        if seq <= self.cursor or self.ended:
            return None
        self.cursor = seq
        if not event.endswith(".delta"):
            self.known = seq
        if event in LEG_ENDS:
            self.ended = True
        return _shared_frame(data) if isinstance(data, Live) else frame(seq, event, data)
