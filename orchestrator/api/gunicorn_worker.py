"""The api's gunicorn worker: gevent's, plus what keeps one client from starving the others.

- Headers: a connection has `header_timeout_seconds` to send a request line and its headers (it is also
  how long an idle keep-alive connection stays open), else it is closed.
- Body: a request has `body_timeout_seconds` in all to send its body; past that the read fails and the
  client gets a 408 envelope (`BodyDeadline`, a WSGI middleware, since the body is read by the app).
- Connections: at most `max_connections_per_client` open at once per client address in this worker
  process; the next one gets a 429 envelope and is closed.
- Errors gunicorn answers before the app sees the request (a bad request line, a URI or headers past its
  limits, a malformed chunked body): the OpenAI error envelope, as JSON, instead of gunicorn's HTML page.
"""

from __future__ import annotations

import collections
import contextlib
import json

import gevent
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from orchestrator.api.http import unreadable
from orchestrator.domain.errors import RequestTimeout

# gunicorn's parse errors that are not plain 400s, with the status and reason it gives them.
_STATUS = {
    http_errors.LimitRequestLine: (414, "URI Too Long"),
    http_errors.LimitRequestHeaders: (431, "Request Header Fields Too Large"),
    http_errors.UnsupportedTransferCoding: (501, "Not Implemented"),
    http_errors.ExpectationFailed: (417, "Expectation Failed"),
    http_errors.ForbiddenProxyRequest: (403, "Forbidden"),
}


class ApiWorker(GeventWorker):
    """gunicorn's gevent worker with the limits above. Settings come from the orchestrator Settings the
    server passes in gunicorn's config (`orchestrator_settings`, read in `init_process`)."""

    def init_process(self) -> None:
        settings = self.app.orchestrator_settings
        self.header_timeout = settings.header_timeout_seconds
        self.per_client = settings.max_connections_per_client
        self.open_by_address: collections.Counter[str] = collections.Counter()
        super().init_process()

    def timeout_ctx(self):
        # Around reading each request's line and headers (and the keep-alive wait before it).
        return gevent.Timeout(self.header_timeout, False)

    def handle(self, listener, client, addr) -> None:
        address = addr[0] if isinstance(addr, tuple) else ""
        if self.per_client and self.open_by_address[address] >= self.per_client:
            self._refuse(client, address)
            return
        self.open_by_address[address] += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self.open_by_address[address] -= 1
            if not self.open_by_address[address]:
                del self.open_by_address[address]

    def _refuse(self, client, address: str) -> None:
        self.log.warning("refused a connection from %s: %d already open", address, self.per_client)
        message = (
            f"Too many open connections from your address (at most {self.per_client}); close some first."
        )
        with contextlib.suppress(OSError):
            _write_envelope(client, 429, "Too Many Requests", message, "requests", {"Retry-After": "1"})
        util.close(client)

    def handle_error(self, req, client, addr, exc) -> None:
        if not isinstance(exc, http_errors.ParseException) or isinstance(
            exc, http_errors.InvalidResponseHeader | http_errors.InvalidResponseHeaderName
        ):
            super().handle_error(req, client, addr, exc)  # not the client's fault: gunicorn logs it
            return
        status, reason = next(
            (found for kind, found in _STATUS.items() if isinstance(exc, kind)), (400, "Bad Request")
        )
        self.log.warning("invalid request from %s: %s", addr[0] if addr else "", exc)
        with contextlib.suppress(OSError):
            _write_envelope(client, status, reason, f"{reason}: {exc}", "invalid_request_error")


def _write_envelope(client, status: int, reason: str, message: str, kind: str, headers=None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "Connection: close", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    util.write_nonblock(client, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


class BodyDeadline:
    """WSGI middleware: the request body must arrive within `seconds` of the request's first read of
    it, however it trickles in; gunicorn's own parse errors while reading it become a 400 envelope."""

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    def __call__(self, environ, start_response):
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], self.seconds)
        return self.app(environ, start_response)


class _DeadlineInput:
    def __init__(self, stream, seconds: float):
        self._stream, self._seconds = stream, seconds
        self._deadline: float | None = None

    def read(self, *args):
        return self._bounded(self._stream.read, *args)

    def readline(self, *args):
        return self._bounded(self._stream.readline, *args)

    def readlines(self, *args):
        return self._bounded(self._stream.readlines, *args)

    def __iter__(self):
        return iter(self.readline, b"")

    def _bounded(self, reader, *args):
        loop = gevent.get_hub().loop
        if self._deadline is None:
            self._deadline = loop.now() + self._seconds
        remaining = self._deadline - loop.now()
        if remaining <= 0:
            raise _timed_out(self._seconds)
        timer = gevent.Timeout(remaining)
        try:
            with timer:
                return reader(*args)
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            raise _timed_out(self._seconds) from None
        except http_errors.ParseException as error:
            raise unreadable(str(error)) from None


def _timed_out(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"The request body did not arrive within {seconds:g} seconds.", code="timeout")
