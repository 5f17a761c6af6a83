"""The model port: a chat-completions-shaped request in, a stream of small chunks out. Providers (the local
model, the OpenAI-compatible upstream) implement it; a model call's decisions (domain/model_call.py) read it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelRequest:
    model: str
    # Chat-completions messages: system / user / assistant (with tool_calls) / tool.
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    response_format: Any = None
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    prompt_tokens: int = 0
    # The reserved function names among `tools` that are server-side tools (domain/hosted_tools.py).
    hosted: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a function call; `id` and `name` come once, in the first fragment of an index."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop" | "length" | "tool_calls"


Chunk = TextDelta | ToolCallDelta | Usage | Finish


class ModelError(Exception):
    """A model call that failed. `code` is the run's last_error code; `retryable` says if trying again may help."""

    def __init__(self, message: str, *, code: str = "server_error", retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


class ModelProvider(Protocol):
    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        """Yield chunks as the model produces them; closing the iterator must stop the call promptly."""
