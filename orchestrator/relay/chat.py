"""Chat completions: the local model answers in-process (ARCHITECTURE.md, "The local model"); any other
model is relayed to the upstream its route names (providers/passthrough.py), a stream chunk by chunk as
the upstream sends it.

Not durable work: nothing is written to the database, and a call lives exactly as long as its request.
Each call is measured (observability/model_api.py) when it ends, a stream when its last byte went out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

from orchestrator.context import Context
from orchestrator.domain.errors import InvalidRequest, OrchestratorError, UpstreamError
from orchestrator.domain.model import ModelProvider, ModelRequest
from orchestrator.observability.model_api import CLIENT_CLOSED, Call
from orchestrator.providers import model_routes, passthrough, tokens
from orchestrator.providers.registry import provider_for
from orchestrator.relay import wire
from orchestrator.schemas.chat import CreateChatCompletion
from orchestrator.settings import Settings

API = "chat.completions"
# What a stream read can fail with once the upstream's answer started (the connection, its timeouts).
STREAM_ERRORS = (httpx2.HTTPError, httpx2.StreamError, OSError)


@dataclass(frozen=True)
class Whole:
    """A complete answer: the `chat.completion` (or embeddings list) as JSON bytes."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Streamed:
    """A stream of Server-Sent Event frames. `cancel` stops it from another greenlet (the client left while
    it waited on the model); `close` must run when the response is done with, even if `frames` never
    started (the client left before the first byte): it frees the upstream connection and counts the call."""

    frames: Iterator[bytes]
    cancel: Callable[[], None]
    close: Callable[[], None]
    headers: dict[str, str] = field(default_factory=dict)


Answer = Whole | Streamed


def complete(ctx: Context, tenant_id: str, body: CreateChatCompletion, raw: dict) -> Answer:
    """Answer a chat completions request (`raw` is the body as sent, `body` its validated reading)."""
    model = body.model
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    call = Call(tenant_id, API, model)
    try:
        if model.startswith("local"):
            return _local(ctx, call, model, body, raw)
        return _relayed(call, target_for(model, ctx.settings), body, raw)
    except OrchestratorError as error:
        call.end(error.status)
        raise


def target_for(model: str, settings: Settings) -> model_routes.Target:
    """The upstream of a model; a bad models file or an unset key variable is the operator's 502."""
    try:
        return model_routes.resolve(model, settings)
    except model_routes.RoutesError as error:
        raise UpstreamError(str(error), status=502, code="upstream_misconfigured") from None


# --- the local model ---------------------------------------------------------------------------------


def _local(ctx: Context, call: Call, model: str, body: CreateChatCompletion, raw: dict) -> Answer:
    if (body.n or 1) > 1:
        raise InvalidRequest(
            f"The model '{model}' makes one choice per request: 'n' must be 1.",
            param="n",
            code="unsupported_value",
        )
    request = model_request(model, body, raw)
    provider = provider_for(model, ctx.settings)
    if not body.stream:
        answer = wire.completion(model, ctx.timestamp(), provider.stream(request))
        usage = answer["usage"]
        call.tokens(usage["prompt_tokens"], usage["completion_tokens"])
        call.end(200)
        return Whole(json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode())
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    shaper = wire.Chunks(model, ctx.timestamp(), include_usage)
    frames = _local_frames(provider, request, shaper, call)
    # The local model notices a departed client at its next word, when the frame cannot be written.
    return Streamed(frames, cancel=lambda: None, close=lambda: call.end(CLIENT_CLOSED))


def _local_frames(
    provider: ModelProvider, request: ModelRequest, shaper: wire.Chunks, call: Call
) -> Iterator[bytes]:
    status = CLIENT_CLOSED
    chunks = provider.stream(request)
    try:
        yield wire.frame(shaper.first())
        for chunk in chunks:
            shaped = shaper.take(chunk)
            if shaped is not None:
                yield wire.frame(shaped)
        last = shaper.last()
        if last is not None:
            yield wire.frame(last)
        yield wire.DONE
        status = 200
    finally:
        chunks.close()
        if shaper.counted is not None:
            call.tokens(shaper.counted.prompt_tokens, shaper.counted.completion_tokens)
        call.end(status)


def model_request(model: str, body: CreateChatCompletion, raw: dict) -> ModelRequest:
    """The model port's request for a chat completions body (the local model reads it)."""
    messages = [_plain(message) for message in raw["messages"]]
    tools = [tool for tool in raw.get("tools") or [] if tool.get("type") == "function"]
    choice = raw.get("tool_choice")
    if choice is None or (isinstance(choice, dict) and choice.get("type") != "function"):
        choice = "auto"  # allowed_tools and custom choices: the local model picks by its own rule
    return ModelRequest(
        model=model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        response_format=raw.get("response_format"),
        temperature=body.temperature,
        top_p=body.top_p,
        max_completion_tokens=body.max_completion_tokens or body.max_tokens,
        prompt_tokens=tokens.count_messages(messages) + tokens.count_tools(tools),
    )


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the local model reads it: `developer` is a system message, and the content of any
    message but the user's is its text."""
    role = "system" if message["role"] == "developer" else message["role"]
    content = message.get("content")
    if isinstance(content, list) and role != "user":
        content = " ".join(part["text"] for part in content if part.get("type") == "text")
    return {**message, "role": role, "content": content}


# --- the upstream -------------------------------------------------------------------------------------


def _relayed(call: Call, target: model_routes.Target, body: CreateChatCompletion, raw: dict) -> Answer:
    stream = bool(body.stream)
    response = passthrough.send(
        target, passthrough.CHAT, passthrough.chat_body(raw, target, stream=stream), stream=stream
    )
    headers = passthrough.passed_headers(response)
    tally = Tally(raw["messages"], call.labels[2])
    if not stream:
        tally.read(response.content)
        call.tokens(*tally.tokens())
        call.end(response.status_code)
        return Whole(response.content, headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    relay = Relay(response, target, include_usage, call, tally)
    return Streamed(relay.frames(), relay.cancel, relay.close, headers)


class Relay:
    """An upstream's stream passed on event by event. The usage chunk the relay asked for is dropped when
    the client did not ask for it; a failure after the start becomes a stream error event."""

    def __init__(self, response: httpx2.Response, target, include_usage: bool, call: Call, tally: Tally):
        self.response, self.target, self.include_usage = response, target, include_usage
        self.call, self.tally = call, tally
        self.cancelled = False

    def cancel(self) -> None:
        """The client went away: close the upstream request now (from the disconnect watcher)."""
        self.cancelled = True
        self.response.close()

    def close(self) -> None:
        self.response.close()
        self.call.end(CLIENT_CLOSED)  # a no-op when the frames ended it

    def frames(self) -> Iterator[bytes]:
        status = CLIENT_CLOSED
        try:
            done = False
            for batch in passthrough.batches(self.response):
                # Read on past [DONE] to the end of the body: a response read to its end leaves its
                # connection in the pool for the next call (no new TCP or TLS handshake).
                passed = []
                for data in batch:
                    done = done or data == b"[DONE]"
                    if not done and (self.tally.read(data) or self.include_usage):
                        passed.append(b"data: " + data + b"\n\n")
                if passed:
                    yield b"".join(passed)
            yield wire.DONE
            status = 502 if self.tally.failed else 200
        except Exception as error:
            if self.cancelled or not isinstance(error, STREAM_ERRORS):
                raise
            failure = passthrough.interrupted(error, self.target)
            status = failure.status
            yield b"data: " + passthrough.error_event(failure) + b"\n\n"
        finally:
            self.response.close()
            self.call.tokens(*self.tally.tokens())
            self.call.end(status)


class Tally:
    """What a relayed answer tells the metrics: the usage the upstream reports (else counted here), and
    whether it reported an error inside the stream."""

    def __init__(self, messages: list[dict], model: str):
        self.messages, self.model = messages, model
        self.usage: dict | None = None
        self.failed = False
        self._text: list[str] = []

    def read(self, data: bytes) -> bool:
        """Take one chunk (or a whole completion); False for a chunk that only carries the usage."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return True
        if not isinstance(chunk, dict):
            return True
        self.failed = self.failed or bool(chunk.get("error"))
        for choice in chunk.get("choices") or []:
            self._take(choice.get("delta") or choice.get("message") or {})
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
            return bool(chunk.get("choices"))
        return True

    def _take(self, delta: Any) -> None:
        if not isinstance(delta, dict):
            return
        if isinstance(delta.get("content"), str):
            self._text.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            if isinstance(arguments, str):
                self._text.append(arguments)

    def tokens(self) -> tuple[int, int]:
        usage = self.usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            return prompt, completion
        # The upstream reported none: count as the worker does for such a server.
        return tokens.count_messages(self.messages, self.model), tokens.count("".join(self._text), self.model)
