"""HTTP responses for relayed model calls (chat completions, embeddings): a whole JSON answer, or a stream
written frame by frame as the model produces it.

A stream's client can leave while the model is still silent (a slow first token); nothing is written then,
so nothing would notice. Under gunicorn's gevent worker a watcher greenlet waits on the client's socket
and, when it reads the end of the connection, cancels the upstream request at once, so the upstream stops
generating for nobody. Elsewhere (`orchestrator dev`'s threads) the departure is noticed at the next
frame, when writing it fails.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

from flask import Response, request

from orchestrator.api.sse import no_delay
from orchestrator.relay.chat import Answer, Streamed

log = logging.getLogger(__name__)


def respond(answer: Answer) -> Response:
    if not isinstance(answer, Streamed):
        response = Response(answer.body, status=200, mimetype="application/json")
    else:
        no_delay()
        watch = watcher(answer.cancel)
        response = Response(_written(answer.frames, watch), status=200, mimetype="text/event-stream")
        response.call_on_close(answer.close)
        response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: don't buffer the stream
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def _written(frames: Iterator[bytes], watch: Callable[[], Callable[[], None]]) -> Iterator[bytes]:
    stop = watch()
    try:
        yield b""  # the status and headers go out now, before the model's first token
        yield from frames
    finally:
        stop()
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def watcher(on_leave: Callable[[], None]) -> Callable[[], Callable[[], None]]:
    """A function that starts watching the request's client connection and returns how to stop."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None or not _gevent():
        return lambda: _nothing

    def start() -> Callable[[], None]:
        import gevent

        greenlet = gevent.spawn(_wait_for_leave, sock, on_leave)
        return lambda: greenlet.kill(block=False)

    return start


def _nothing() -> None:
    pass


def _gevent() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("socket")


def _wait_for_leave(sock: socket.socket, on_leave: Callable[[], None]) -> None:
    from gevent.socket import wait_read

    try:
        wait_read(sock.fileno())
        # Readable: either the connection ended (no bytes) or the client sent more (a pipelined request,
        # left for the server to read: peeking takes nothing).
        left = sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        left = True
    if not left:
        return
    try:
        on_leave()
    except Exception:  # closing a response that is closing anyway: nothing to save
        log.debug("cancelling a stream whose client left failed", exc_info=True)
