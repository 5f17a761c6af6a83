"""Server-Sent Events: the wire format of every stream (frames, keep-alives, the end, writes) and the
responses that carry them. The relay (services/streams.py) decides what to send; this decides how it looks.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Iterable, Iterator

from flask import Response, current_app, g, request

from orchestrator.adapters.ports import Live, event_json
from orchestrator.api.context import ctx
from orchestrator.observability.metrics import instruments
from orchestrator.services.streams import FLUSH, RESPONSE, Item, Marker, Stored, relay

DONE = b"event: done\ndata: [DONE]\n\n"
# A comment line with no empty line of its own (contract §4.6): the SDK's decoder keeps the last `id:` and
# dispatches an event at every empty line once it has one, so ": keep-alive\n\n" reads to it as an event
# with empty data and kills its stream (`json.loads("")`). The next frame's empty line ends this one.
KEEPALIVE = b": keep-alive\n"
# The most one write carries when frames are waiting (a replay, or a watcher that fell behind): large
# enough to cut writes and wake-ups by orders of magnitude, small enough that the client sees progress.
WRITE_LIMIT = 64 * 1024

# Sent when the process stops: EventSource clients reconnect (with Last-Event-ID) after this many ms. No
# empty line after `retry:` (contract §4.6): the SDK would read it as an event with empty data and fail;
# EventSource applies `retry:` as the line is read, and the connection closing right after ends the stream.
RECONNECT = b": server stopping; reconnect with Last-Event-ID\nretry: 1000\n"


def frame(seq: int, event: str, data: dict | str) -> bytes:
    """One SSE frame; `data` is an object, or its JSON text already encoded."""
    text = data if isinstance(data, str) else event_json(data)
    return f"id: {seq}\nevent: {event}\ndata: {text}\n\n".encode()


@functools.lru_cache(maxsize=4096)
def _shared_frame(item: Live) -> bytes:
    """A live event's frame, encoded once for every watcher of the run (Live hashes by identity)."""
    return frame(item.seq, item.event, item.data_json)


_MARKERS = {Marker.KEEPALIVE: KEEPALIVE, Marker.DONE: DONE}


def _bytes(item: Item) -> bytes:
    if type(item) is Live:
        return _shared_frame(item)
    if type(item) is Stored:
        return frame(*item)
    return _MARKERS[item]


# A Response's stream (contract §7.1): no `id:` lines (after one, the SDK's decoder reads a comment-only
# block as an empty event and fails), each event's `sequence_number` in its data, keep-alives as comment
# blocks, nothing after the terminal event.
RESPONSE_KEEPALIVE = b": keep-alive\n\n"


def response_frame(seq: int, event: str, data: dict | str) -> bytes:
    """One event of a Response's stream: the log's number less one is its `sequence_number` (from 0), put
    first in the stored JSON object."""
    text = data if isinstance(data, str) else event_json(data)
    return f'event: {event}\ndata: {{"sequence_number":{seq - 1},{text[1:]}\n\n'.encode()


@functools.lru_cache(maxsize=4096)
def _shared_response_frame(item: Live) -> bytes:
    return response_frame(item.seq, item.event, item.data_json)


def _response_bytes(item: Item) -> bytes:
    if type(item) is Live:
        return _shared_response_frame(item)
    if type(item) is Stored:
        return response_frame(*item)
    return RESPONSE_KEEPALIVE if item is Marker.KEEPALIVE else b""


def writes(items: Iterable[Item], encode=_bytes) -> Iterator[bytes]:
    """The relay's items as frames, joined into writes of up to WRITE_LIMIT bytes and sent at every FLUSH.
    A watcher that keeps up sends each live event on its own; one that fell behind (a burst of deltas to
    many watchers) sends what is waiting in a few writes, which is what keeps a saturated process from
    falling further behind."""
    pending: list[bytes] = []
    size = 0
    try:
        for item in items:
            if item is not FLUSH:
                piece = encode(item)
                pending.append(piece)
                size += len(piece)
                if size < WRITE_LIMIT:
                    continue
            if pending:
                yield pending[0] if len(pending) == 1 else b"".join(pending)
                pending, size = [], 0
        if pending:
            yield b"".join(pending)
    finally:
        close = getattr(items, "close", None)
        if close is not None:  # the relay unsubscribes now, not when the collector finds it
            close()


class Drain:
    """Set (from the SIGTERM handler) when the process is asked to stop."""

    def __init__(self) -> None:
        self.active = False


class Subscription:
    """The live feed of the run a request changes, opened by the service just before the change commits
    (services/runs.py, `watch`): every later event reaches the stream live, so it starts with the change's
    own events, from memory, instead of reading the log back. Used as a context manager around the
    service call, it unsubscribes if the change fails."""

    def __init__(self) -> None:
        self.hub = current_app.extensions["hub"]
        self.run_id: str | None = None
        self.inbox = None

    def __call__(self, run_id: str) -> None:
        self.run_id, self.inbox = run_id, self.hub.watch(run_id)

    def close(self) -> None:
        """For a change that failed, or a response never iterated (the client left first): the relay,
        once started, owns the subscription."""
        if self.inbox is not None:
            self.hub.unwatch(self.run_id, self.inbox)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, exc_type, _exc, _tb) -> None:
        if exc_type is not None:
            self.close()


def subscription(streaming: bool | None) -> Subscription | contextlib.nullcontext:
    return Subscription() if streaming else contextlib.nullcontext()


def run_stream(run: dict, cursor: int, opened: Subscription | None = None, first: tuple = ()) -> Response:
    """Stream the run's events after `cursor` until this leg of the run ends. With `opened` (subscribed
    before the change committed), the stream starts with `first`, the change's own events."""
    hub = current_app.extensions["hub"]
    g.stream_of = {"thread_id": run["thread_id"], "run_id": run["id"], "cursor": cursor}  # a retry's, by key
    no_delay()
    inbox = opened.inbox if opened is not None else None
    body = writes(relay(ctx(), hub, run["id"], cursor, inbox=inbox, first=first if inbox is not None else ()))
    return _event_stream(body, opened)


def response_stream(
    response_id: str, cursor: int, opened: Subscription | None = None, first: tuple = ()
) -> Response:
    """Stream a Response's events after `cursor` until it ends (contract §7): replayed from the log, then
    live; `opened` and `first` as for `run_stream`."""
    hub = current_app.extensions["hub"]
    g.stream_of = {"response_id": response_id, "cursor": cursor}  # what a retry with the same key gets
    no_delay()
    inbox = opened.inbox if opened is not None else None
    items = relay(
        ctx(), hub, response_id, cursor, inbox=inbox, first=first if inbox is not None else (), rules=RESPONSE
    )
    return _event_stream(writes(items, _response_bytes), opened)


def _event_stream(body: Iterator[bytes], opened: Subscription | None) -> Response:
    response = Response(
        _counted(body, current_app.extensions["drain"]), status=200, mimetype="text/event-stream"
    )
    if opened is not None:
        response.call_on_close(opened.close)
    response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: don't buffer the stream
    return response


def no_delay() -> None:
    """Frames are small writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold
    each one back by up to tens of milliseconds."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # not a TCP socket (a unix socket behind a proxy)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _counted(body: Iterator[bytes], drain: Drain) -> Iterator[bytes]:
    """Count the open stream, and end it cleanly at its next frame or keep-alive once the process drains:
    the client resumes from its last event id on another process, instead of being cut off."""
    gauge = instruments().streams_active
    gauge.inc()
    try:
        for chunk in body:
            yield chunk
            if drain.active:
                yield RECONNECT
                return
    finally:
        gauge.dec()
        close = getattr(body, "close", None)
        if close is not None:
            close()
