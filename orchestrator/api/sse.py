"""Server-Sent Events responses for run streams."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from flask import Response, current_app, g, request

from orchestrator.api.context import ctx
from orchestrator.observability.metrics import instruments
from orchestrator.services.streams import relay

# Sent when the process stops: EventSource clients reconnect (with Last-Event-ID) after this many ms. No
# empty line after `retry:` (contract §4.6): the SDK would read it as an event with empty data and fail;
# EventSource applies `retry:` as the line is read, and the connection closing right after ends the stream.
RECONNECT = b": server stopping; reconnect with Last-Event-ID\nretry: 1000\n"


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
    g.stream_of = (run["thread_id"], run["id"], cursor)  # what an idempotency key records for a retry
    no_delay()
    inbox = opened.inbox if opened is not None else None
    body = relay(ctx(), hub, run["id"], cursor, inbox=inbox, first=first if inbox is not None else ())
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
