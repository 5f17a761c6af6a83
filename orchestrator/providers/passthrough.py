"""Relaying a chat completions or embeddings call to the upstream its model routes to (docs/models.md):
the client's body goes up nearly as sent, and the answer comes back as bytes, a stream event by event as
it arrives, never re-modelled. The api process uses it (relay/chat.py, relay/embeddings.py); a run's
model calls go through providers/upstream.py instead, which reads the reply.

What changes on the way up:

    model                   the route's name for it
    max_completion_tokens   sent as `max_tokens` on a route with `max_tokens_param: max_tokens`
    image parts             dropped on a route with `images: false` (their text kept)
    stream_options          `include_usage` always asked for on a stream, so usage can be counted

How a failure comes back (UpstreamError), before the answer started:

    429                                       429 with the upstream's message, Retry-After passed on
    any other 4xx but 401, 403, 407           the upstream's status and error, passed on
    401, 403, 407 (our key to it is wrong)    502 naming the route: configuration, not the client's fault
    5xx, unreachable, not an HTTP answer      502 naming the route
    silent past the route's timeout           504 naming the route

and after it started (`interrupted`): the same 502 or 504, which the relay sends as a stream error event.
Nothing is retried here: the client's SDK retries 429s and 5xx itself, and a retry here would double them.

The request goes out on a plain httpx client, one connection pool per endpoint per process, with the
route's timeouts, the endpoint's key and, for an Azure route, Azure's URL (`/openai/deployments/{name}/…
?api-version=…`) and `api-key` header: the SDK's request machinery cost half a millisecond of CPU a call,
for a body that is only passed on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx2

from orchestrator.domain.errors import UpstreamError
from orchestrator.providers.model_routes import Endpoint, Target
from orchestrator.providers.upstream import sendable

CHAT = "/chat/completions"
EMBEDDINGS = "/embeddings"
# Our own credentials to the upstream were refused: the client cannot fix that.
_OURS = (401, 403, 407)
PASSED_HEADERS = ("x-ratelimit-",)
RETRY_HEADERS = ("retry-after", "retry-after-ms")

log = logging.getLogger(__name__)


def chat_body(body: dict[str, Any], target: Target, *, stream: bool) -> dict[str, Any]:
    """The body sent upstream for a client's chat completions body."""
    sent = {**body, "model": target.model}
    if stream:
        sent["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if target.max_tokens_param == "max_tokens" and "max_completion_tokens" in sent:
        sent["max_tokens"] = sent.pop("max_completion_tokens")
    if not target.images:
        sent["messages"] = [sendable(message, False) for message in sent["messages"]]
    return sent


def send(target: Target, path: str, body: dict[str, Any], *, stream: bool) -> httpx2.Response:
    """POST `body` to the target's endpoint. A stream's response is open (close it); otherwise read."""
    http = http_for(target.endpoint)
    url, params, headers = _address(target, path)
    request = http.build_request("POST", url, params=params, headers=headers, json=body)
    try:
        response = http.send(request, stream=stream)
    except (httpx2.ConnectTimeout, httpx2.PoolTimeout) as error:
        raise unreachable(target, error) from None
    except httpx2.TimeoutException:
        raise timed_out(target) from None
    except httpx2.HTTPError as error:
        raise unreachable(target, error) from None
    if response.status_code >= 400:
        try:
            response.read()
        except httpx2.HTTPError as error:
            raise unreachable(target, error) from None
        finally:
            response.close()
        raise refused(response, target)
    return response


def _address(target: Target, path: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL, query and credentials of a call: OpenAI's shape, or Azure's for an Azure route."""
    endpoint = target.endpoint
    if endpoint.azure_endpoint:
        deployment = endpoint.azure_deployment or target.model
        url = f"{endpoint.azure_endpoint.rstrip('/')}/openai/deployments/{deployment}{path}"
        return url, {"api-version": endpoint.api_version or ""}, {"api-key": endpoint.api_key}
    return (
        f"{(endpoint.base_url or '').rstrip('/')}{path}",
        {},
        {"Authorization": f"Bearer {endpoint.api_key}"},
    )


_pools: dict[Endpoint, httpx2.Client] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()


def http_for(endpoint: Endpoint) -> httpx2.Client:
    """One connection pool per endpoint per process (a forked child makes its own)."""
    global _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():
            _pools.clear()
            _pools_pid = os.getpid()
        http = _pools.get(endpoint)
        if http is None:
            connect = min(endpoint.connect_timeout_seconds, endpoint.timeout_seconds)
            size = endpoint.max_connections
            http = _pools[endpoint] = httpx2.Client(
                timeout=httpx2.Timeout(endpoint.timeout_seconds, connect=connect),
                limits=httpx2.Limits(max_connections=size, max_keepalive_connections=size),
            )
        return http


def batches(response: httpx2.Response) -> Iterator[list[bytes]]:
    """The `data` of the Server-Sent Events of a streamed response, as soon as their blank lines arrive:
    the events one read brings, together (a relay that fell behind then catches up in one write)."""
    buffer = b""
    for piece in response.iter_bytes():
        buffer += piece
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in buffer:
            continue
        *blocks, buffer = buffer.split(b"\n\n")
        found = [data for data in map(_data, blocks) if data is not None]
        if found:
            yield found
    last = _data(buffer)
    if last is not None:
        yield [last]


def events(response: httpx2.Response) -> Iterator[bytes]:
    """The `data` of each Server-Sent Event, one by one."""
    for batch in batches(response):
        yield from batch


def _data(block: bytes) -> bytes | None:
    lines = [line[5:].removeprefix(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def passed_headers(response: httpx2.Response) -> dict[str, str]:
    """The upstream's headers worth passing on to the client (its rate limits)."""
    return {k: v for k, v in response.headers.items() if k.lower().startswith(PASSED_HEADERS)}


# --- failures --------------------------------------------------------------------------------------


def refused(response: httpx2.Response, target: Target) -> UpstreamError:
    """The error for an upstream's error answer (its body read)."""
    status, detail = response.status_code, _detail(response)
    if status == 429:
        return UpstreamError(
            detail["message"] or "The upstream model endpoint is rate limited.",
            status=429,
            type=detail["type"] or "requests",
            code=detail["code"] or "rate_limit_exceeded",
            retry_after=_retry_after(response),
            # The upstream's own words for when to come back, exactly as it said them.
            headers=passed_headers(response)
            | {name: response.headers[name] for name in RETRY_HEADERS if name in response.headers},
        )
    if 400 <= status < 500 and status not in _OURS:
        return UpstreamError(
            detail["message"] or f"The upstream model endpoint refused the request (HTTP {status}).",
            status=status,
            type=detail["type"] or "invalid_request_error",
            code=detail["code"],
            param=detail["param"],
        )
    log.warning("upstream %s failed with HTTP %s: %s", target.route, status, detail["message"])
    return UpstreamError(
        f"The upstream model endpoint ({target.route}) failed with HTTP {status}: "
        f"{detail['message'] or 'no detail'}",
        status=502,
        code="upstream_error",
    )


def timed_out(target: Target) -> UpstreamError:
    seconds = target.endpoint.timeout_seconds
    return UpstreamError(
        f"The upstream model endpoint ({target.route}) sent nothing for {seconds:g} s.",
        status=504,
        code="upstream_timeout",
    )


def unreachable(target: Target, cause: BaseException) -> UpstreamError:
    log.warning("upstream %s unreachable: %s: %s", target.route, type(cause).__name__, cause)
    return UpstreamError(
        f"Could not reach the upstream model endpoint ({target.route}): {type(cause).__name__}.",
        status=502,
        code="upstream_unreachable",
    )


def malformed(target: Target) -> UpstreamError:
    return UpstreamError(
        f"The upstream model endpoint ({target.route}) answered with something that is not a JSON object.",
        status=502,
        code="upstream_error",
    )


def interrupted(error: Exception, target: Target) -> UpstreamError:
    """A stream that broke after it started: silent past the timeout, or the connection failed."""
    if isinstance(error, httpx2.TimeoutException):
        return timed_out(target)
    log.warning("upstream %s stream broke: %s: %s", target.route, type(error).__name__, error)
    return UpstreamError(
        f"The upstream model endpoint ({target.route}) broke off the stream: {type(error).__name__}.",
        status=502,
        code="upstream_error",
    )


def _detail(response: httpx2.Response) -> dict[str, Any]:
    """The upstream's error envelope's fields (a server that sends none: its body as the message)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        found = body.get("error", body)
        if isinstance(found, dict):
            fields = {key: found.get(key) for key in ("message", "type", "code", "param")}
            return {key: value if isinstance(value, str) else None for key, value in fields.items()}
    text = response.text.strip()[:500]
    return {"message": text or None, "type": None, "code": None, "param": None}


def _retry_after(response: httpx2.Response) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(float(response.headers[name]) / scale, 0.0)
        except (KeyError, ValueError):
            continue
    return None


def error_event(error: UpstreamError) -> bytes:
    """A stream error as the SDK reads one: a `data` event whose object has an `error`."""
    return json.dumps(error.envelope()).encode()
