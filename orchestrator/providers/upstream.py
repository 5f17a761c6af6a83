"""The OpenAI-compatible upstream: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server, LM Studio, TGI,
called through the official `openai` SDK with streaming chat completions.

Retries are this module's, not the SDK's: clients are built with `max_retries=0`, because a failure can
also come after the response headers (a stalled first token, an error event in the stream), and a retry
is only safe before the first chunk reached the run. So:

    attempt ─▶ failure before the first chunk and retryable ─▶ back off (exponential, Retry-After
               honoured up to the cap) ─▶ attempt again, up to `upstream_attempts` in all
            ─▶ failure after the first chunk, not retryable, or out of attempts ─▶ ModelError

How failures map (ModelError.code, retried?):

    429 RateLimitError                                   rate_limit_exceeded  yes
    408, 409, 5xx                                        server_error         yes
    connection refused / reset / connect timeout         server_error         yes
    silent past the timeout (read timeout)               server_error         no: the timeout bounds the call
    400, 413, 422                                        invalid_prompt       no
    any other status (401, 403, 404, ...)                server_error         no: configuration, not luck
    an error event inside the stream                     server_error (rate_limit_exceeded if so coded)  yes
    a malformed or empty stream                          server_error         yes

Closing the generator (the run engine does on cancel) closes the HTTP response at once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from orchestrator.domain.model import (
    Chunk,
    Finish,
    ModelError,
    ModelProvider,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from orchestrator.providers import model_routes as routes
from orchestrator.providers import tokens
from orchestrator.settings import Settings

_FINISH = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}
_TOOL_CHOICES = ("none", "auto", "required")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 8.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.upstream_attempts,
            settings.upstream_backoff_seconds,
            settings.upstream_backoff_max_seconds,
        )

    def delay(self, attempt: int, error: Exception) -> float:
        asked = _retry_after(error)
        if asked is not None:
            return min(asked, self.backoff_max_seconds)
        exponential = self.backoff_seconds * 2 ** (attempt - 1)
        return min(exponential * random.uniform(0.5, 1.0), self.backoff_max_seconds)


class UpstreamModel:
    """A ModelProvider backed by one chat-completions endpoint."""

    def __init__(
        self,
        client: openai.OpenAI,
        target: routes.Target,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client, self.target = client, target
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._response: Any = None
        self._aborted = False

    @classmethod
    def for_model(cls, model: str, settings: Settings) -> ModelProvider:
        try:
            target = routes.resolve(model, settings)
        except routes.RoutesError as error:
            return Misconfigured(str(error))
        return cls(client_for(target.endpoint), target, RetryPolicy.from_settings(settings))

    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        params = chat_params(request, self.target)
        for attempt in range(1, self.retry.attempts + 1):
            reader = StreamReader(request, self.target.model)
            try:
                with self.client.chat.completions.create(**params) as response:
                    self._response = response
                    if self._aborted:
                        return
                    for upstream_chunk in response:
                        yield from reader.take(upstream_chunk)
                    yield from reader.finish()
                return
            except (openai.APIError, json.JSONDecodeError, EmptyStream) as error:
                failure = classify(error, self.target.endpoint.timeout_seconds)
                if reader.started or not failure.retryable or attempt == self.retry.attempts:
                    raise failure.error(attempt, reader.started) from error
                self._sleep(self.retry.delay(attempt, error))

    def abort(self) -> None:
        """Close the upstream response from another thread (a cancel while the model is silent)."""
        self._aborted = True
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:
                log.debug("closing the upstream response failed", exc_info=True)


class Misconfigured:
    """Stands in for a model whose route cannot be resolved, so the run fails with the reason."""

    def __init__(self, message: str):
        self.message = message

    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        raise ModelError(self.message, code="server_error")
        yield  # a generator, like every provider


# --- the request ----------------------------------------------------------------------------------


def chat_params(request: ModelRequest, target: routes.Target) -> dict[str, Any]:
    """The keyword arguments of `chat.completions.create` for a model request."""
    params: dict[str, Any] = {
        "model": target.model,
        "messages": [sendable(m, target.images) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tools = [_tool(t) for t in request.tools if t.get("type") == "function"]
    if tools:
        params["tools"] = tools
        choice = tool_choice(request.tool_choice)
        if choice is not None:
            params["tool_choice"] = choice
        params["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = response_format(request.response_format)
    if fmt is not None:
        params["response_format"] = fmt
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.max_completion_tokens is not None:
        params[target.max_tokens_param] = request.max_completion_tokens
    return params


def tool_choice(choice: Any) -> Any:
    """Assistants tool_choice → chat completions; None means "don't send it"."""
    if isinstance(choice, str):
        return choice if choice in _TOOL_CHOICES else None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") == "function" and name:
            return {"type": "function", "function": {"name": name}}
        return "auto"  # code_interpreter / file_search: not tools an upstream can be forced to
    return None


def response_format(value: Any) -> dict[str, Any] | None:
    """json_object and json_schema pass through; "auto", text and null are the default, so not sent."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return {"type": "json_object"}
    if value.get("type") == "json_schema":
        schema = {k: v for k, v in (value.get("json_schema") or {}).items() if v is not None}
        return {"type": "json_schema", "json_schema": schema}
    return None


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {k: v for k, v in tool["function"].items() if v is not None}
    return {"type": "function", "function": function}


def sendable(message: dict[str, Any], images: bool) -> dict[str, Any]:
    """A chat message as a route takes it: with `images: false`, its parts become their text alone."""
    content = message.get("content")
    if images or not isinstance(content, list):
        return message
    texts = [part["text"] for part in content if part.get("type") == "text"]
    return {**message, "content": "\n".join(texts)}


# --- the response ---------------------------------------------------------------------------------


class EmptyStream(Exception):
    """The upstream ended its stream with neither output nor a finish reason."""


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    pending: str = ""  # arguments received but not yet yielded


@dataclass
class StreamReader:
    """Turns chat-completion chunks into provider chunks.

    Tool-call fragments are renumbered 0..n-1 in order of appearance, and a call is announced (its first
    ToolCallDelta, with id and name) only once its name is known and every call before it is announced:
    servers differ in how they number calls and in which fragment carries the name.
    """

    request: ModelRequest
    model: str
    started: bool = False
    finish_reason: str | None = None
    usage: Any = None
    _text: list[str] = field(default_factory=list)
    _calls: list[_Call] = field(default_factory=list)
    _slots: dict[int, int] = field(default_factory=dict)
    _announced: int = 0

    def take(self, chunk: Any) -> Iterator[Chunk]:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) not in (0, None):
                continue
            yield from self._delta(getattr(choice, "delta", None))
            if getattr(choice, "finish_reason", None):
                self.finish_reason = choice.finish_reason

    def finish(self) -> Iterator[Chunk]:
        if self.finish_reason is None and not self.started and not self._calls:
            raise EmptyStream("The upstream model endpoint ended the stream without a reply.")
        yield from self._mark(self._flush(final=True))
        yield Usage(*self._usage())
        reason = _FINISH.get(self.finish_reason or "", "stop")
        yield Finish("tool_calls" if self._calls and reason == "stop" else reason)

    def _delta(self, delta: Any) -> Iterator[Chunk]:
        if delta is None:
            return
        for text in (getattr(delta, "content", None), getattr(delta, "refusal", None)):
            if text:
                self._text.append(text)
                self.started = True
                yield TextDelta(text)
        for fragment in getattr(delta, "tool_calls", None) or []:
            self._fragment(fragment)
        yield from self._mark(self._flush(final=False))

    def _mark(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            self.started = True
            yield chunk

    def _fragment(self, fragment: Any) -> None:
        upstream = getattr(fragment, "index", None) or 0
        call_id = getattr(fragment, "id", None)
        function = getattr(fragment, "function", None)
        slot = self._slots.get(upstream)
        if slot is None or (call_id and self._calls[slot].id not in (None, call_id)):
            slot = self._slots[upstream] = len(self._calls)
            self._calls.append(_Call())
        call = self._calls[slot]
        call.id = call.id or call_id
        call.name = call.name or getattr(function, "name", None) or None
        call.pending += getattr(function, "arguments", None) or ""

    def _flush(self, *, final: bool) -> Iterator[Chunk]:
        for index, call in enumerate(self._calls):
            if index >= self._announced:
                if call.name is None and not final:
                    return
                yield ToolCallDelta(index=index, id=call.id, name=call.name or "", arguments=call.pending)
                self._announced += 1
            elif call.pending:
                yield ToolCallDelta(index=index, arguments=call.pending)
            self._text.append(call.pending)
            call.pending = ""

    def _usage(self) -> tuple[int, int]:
        prompt = getattr(self.usage, "prompt_tokens", None)
        completion = getattr(self.usage, "completion_tokens", None)
        if prompt is None or completion is None:
            # The server sent no usage: count the prompt as the request did and the reply ourselves.
            names = "".join(call.name or "" for call in self._calls)
            return self.request.prompt_tokens, tokens.count("".join(self._text) + names, self.model)
        return prompt, completion


# --- failures --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    code: str
    retryable: bool
    reason: str

    def error(self, attempts: int, started: bool) -> ModelError:
        message = self.reason
        if started:
            message += " The reply had already started streaming, so it was not retried."
        elif attempts > 1:
            message += f" Gave up after {attempts} attempts."
        return ModelError(message, code=self.code, retryable=self.retryable)


def classify(error: Exception, timeout: float) -> Failure:
    if isinstance(error, openai.APITimeoutError):
        connecting = isinstance(error.__cause__, httpx2.ConnectTimeout | httpx2.PoolTimeout)
        if connecting:
            return Failure("server_error", True, "Timed out connecting to the upstream model endpoint.")
        return Failure("server_error", False, f"The upstream model endpoint sent nothing for {timeout:g} s.")
    if isinstance(error, openai.APIConnectionError):
        return Failure("server_error", True, f"Could not reach the upstream model endpoint: {_cause(error)}.")
    if isinstance(error, openai.APIStatusError):
        return _status_failure(error)
    if isinstance(error, openai.APIError):
        code = f"{error.code or ''} {error.type or ''}"
        kind = "rate_limit_exceeded" if "rate_limit" in code else "server_error"
        return Failure(kind, True, f"The upstream model stream reported an error: {_detail(error)}")
    if isinstance(error, EmptyStream):
        return Failure("server_error", True, str(error))
    return Failure("server_error", True, f"The upstream model endpoint sent a malformed stream: {error}")


def _status_failure(error: openai.APIStatusError) -> Failure:
    status, detail = error.status_code, _detail(error)
    if status == 429:
        return Failure("rate_limit_exceeded", True, f"The upstream model endpoint is rate limited: {detail}")
    if status in (400, 413, 422):
        return Failure("invalid_prompt", False, f"The upstream model endpoint rejected the prompt: {detail}")
    retryable = status >= 500 or status in (408, 409)
    return Failure(
        "server_error", retryable, f"The upstream model endpoint failed with HTTP {status}: {detail}"
    )


def _detail(error: openai.APIError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return error.message


def _cause(error: Exception) -> str:
    cause = error.__cause__
    return f"{type(cause).__name__}: {cause}" if cause else str(error)


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(float(headers[name]) / scale, 0.0)
        except (KeyError, ValueError):
            continue
    return None  # absent, or an HTTP date: fall back to our own backoff


# --- clients ---------------------------------------------------------------------------------------

_clients: dict[routes.Endpoint, openai.OpenAI] = {}
_clients_pid = os.getpid()
_clients_lock = threading.Lock()


def client_for(endpoint: routes.Endpoint) -> openai.OpenAI:
    """One SDK client (and so one connection pool) per endpoint per process."""
    global _clients_pid
    with _clients_lock:
        if _clients_pid != os.getpid():
            _clients.clear()  # forked: the parent's pooled connections are not ours to use
            _clients_pid = os.getpid()
        client = _clients.get(endpoint)
        if client is None:
            client = _clients[endpoint] = build_client(endpoint)
        return client


def close_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def build_client(endpoint: routes.Endpoint) -> openai.OpenAI:
    timeout = openai.Timeout(
        endpoint.timeout_seconds, connect=min(endpoint.connect_timeout_seconds, endpoint.timeout_seconds)
    )
    # Every model stream holds a connection for its whole length: the pool is sized for the process's runs
    # in flight, and keeps them all alive for the next turn.
    limits = httpx2.Limits(
        max_connections=endpoint.max_connections, max_keepalive_connections=endpoint.max_connections
    )
    http = openai.DefaultHttpxClient(limits=limits, timeout=timeout)
    if endpoint.azure_endpoint:
        return openai.AzureOpenAI(
            azure_endpoint=endpoint.azure_endpoint,
            azure_deployment=endpoint.azure_deployment,
            api_version=endpoint.api_version,
            api_key=endpoint.api_key,
            timeout=timeout,
            max_retries=0,
            http_client=http,
        )
    return openai.OpenAI(
        base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=timeout, max_retries=0, http_client=http
    )
