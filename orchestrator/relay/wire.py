"""The chat completions objects a model's chunks (domain/model.py) make: `chat.completion.chunk`s as they
come, or one `chat.completion` at the end. For the local model; an upstream's objects are relayed as sent."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from orchestrator.domain.model import Chunk, Finish, TextDelta, ToolCallDelta, Usage

DONE = b"data: [DONE]\n\n"


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def frame(payload: dict[str, Any]) -> bytes:
    """One Server-Sent Event of a chat stream."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def usage(counted: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": counted.prompt_tokens,
        "completion_tokens": counted.completion_tokens,
        "total_tokens": counted.prompt_tokens + counted.completion_tokens,
    }


class Chunks:
    """The `chat.completion.chunk` objects of one streamed completion, in OpenAI's order: the role first,
    then content or tool-call deltas, the finish reason, and (with `include_usage`) a last chunk with no
    choices and the usage; every chunk before it then carries `"usage": null`."""

    def __init__(self, model: str, created: int, include_usage: bool):
        self.head = {"id": completion_id(), "object": "chat.completion.chunk", "created": created}
        self.head |= {"model": model, "system_fingerprint": None}
        self.include_usage = include_usage
        self.counted: Usage | None = None

    def first(self) -> dict[str, Any]:
        return self._choice({"role": "assistant", "content": ""}, None)

    def take(self, chunk: Chunk) -> dict[str, Any] | None:
        """The object for one model chunk; None for the usage, which `last` sends at the end."""
        if isinstance(chunk, TextDelta):
            return self._choice({"content": chunk.text}, None)
        if isinstance(chunk, ToolCallDelta):
            return self._choice({"tool_calls": [tool_call_delta(chunk)]}, None)
        if isinstance(chunk, Finish):
            return self._choice({}, chunk.reason)
        self.counted = chunk
        return None

    def last(self) -> dict[str, Any] | None:
        if not self.include_usage or self.counted is None:
            return None
        return {**self.head, "choices": [], "usage": usage(self.counted)}

    def _choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {**self.head, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk


def tool_call_delta(chunk: ToolCallDelta) -> dict[str, Any]:
    if chunk.name is None:
        return {"index": chunk.index, "function": {"arguments": chunk.arguments}}
    function = {"name": chunk.name, "arguments": chunk.arguments}
    return {"index": chunk.index, "id": chunk.id, "type": "function", "function": function}


def completion(model: str, created: int, chunks: Iterable[Chunk]) -> dict[str, Any]:
    """The whole `chat.completion` of a model's chunks."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    counted, reason = Usage(0, 0), "stop"
    for chunk in chunks:
        if isinstance(chunk, TextDelta):
            text.append(chunk.text)
        elif isinstance(chunk, ToolCallDelta):
            call = calls.setdefault(chunk.index, {"id": chunk.id, "type": "function", "function": {}})
            function = call["function"]
            function["name"] = function.get("name") or chunk.name or ""
            function["arguments"] = function.get("arguments", "") + chunk.arguments
        elif isinstance(chunk, Usage):
            counted = chunk
        elif isinstance(chunk, Finish):
            reason = chunk.reason
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    message |= {"refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(counted),
        "system_fingerprint": None,
    }
