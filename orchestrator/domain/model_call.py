"""The decisions of one model call, with no database, network or clock: what the model said, what the step
stores, which deltas watchers get, and how the call ends the run's leg.

    chunks ──▶ ModelCall.take(chunk) ──▶ [Open(kind)] + [Delta(...)]      (effects, in order)
    end    ──▶ ModelCall.ending(cancelled=…) ──▶ Ending(target, values)  (how the run moves)

A call opens its step at its first output: a message_creation step (and its message) for text, a
tool_calls step for tool calls. When the call redoes the reply of a worker that died (`streamed` is the
text its watchers already hold), deltas resume only where that text ends, so nobody sees a word twice.

A message shows the images the run's code made since its previous message (`images`, set when its step
opens) before its text, as the hosted API does: each an `image_file` part at its own index, streamed ahead
of the first word, and the text after them.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.hosted_tools import HostedCall
from orchestrator.domain.lifecycle import RunEvent, RunStatus, StepType
from orchestrator.domain.model import Finish, TextDelta, ToolCallDelta, Usage
from orchestrator.domain.storable import storable


@dataclass(frozen=True)
class Open:
    """Open the call's step (for text, with its message) before the first delta."""

    kind: StepType


@dataclass(frozen=True)
class Delta:
    """A delta of the step's message (`on_message`) or of the step itself."""

    event: RunEvent
    delta: dict[str, Any]

    @property
    def on_message(self) -> bool:
        return self.event is RunEvent.MESSAGE_DELTA


@dataclass(frozen=True)
class Ending:
    """Where the run goes when the call ends, with the run fields that move sets."""

    target: RunStatus
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelCall:
    prompt_tokens: int = 0
    streamed: str = ""  # what a dead worker streamed of the message this call redoes
    kind: StepType | None = None
    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    completion_tokens: int = 0
    finish: str = "stop"
    # The reserved function names of server-side tools offered to this call (domain/hosted_tools.py).
    hosted: frozenset[str] = frozenset()
    # The call's server-side tool calls, by index; `calls` holds its function calls.
    hosted_calls: dict[int, HostedCall] = field(default_factory=dict)
    # The image files the message shows before its text, and whether watchers have them already (a
    # redo of a message a dead worker had begun to stream).
    images: list[str] = field(default_factory=list)
    images_shown: bool = False

    def take(self, chunk: Any) -> Iterator[Open | Delta]:
        """The effects of one chunk, in order. A generator: the caller applies an Open (which may set
        `streamed`, for a redone reply) before the text that follows it is weighed. What the model wrote
        is taken as Postgres can store it (domain/storable.py), so watchers see what is stored."""
        match chunk:
            case TextDelta(text=text) if text:
                yield from self._opening(StepType.MESSAGE_CREATION)
                yield from self._text(storable(text))
            case ToolCallDelta():
                yield from self._opening(StepType.TOOL_CALLS)
                delta = self._fragment(_storable_call(chunk))
                if delta is not None:
                    yield delta
            case Usage(prompt_tokens=prompt, completion_tokens=completion):
                self.prompt_tokens, self.completion_tokens = prompt, completion
            case Finish(reason=reason):
                self.finish = reason

    def _opening(self, kind: StepType) -> list[Open]:
        if self.kind is not None:
            return []
        self.kind = kind
        return [Open(kind)]

    def _text(self, text: str) -> list[Delta]:
        first = not self.text and not self.streamed
        self.text += text
        if self.streamed:
            if self.streamed.startswith(self.text):
                return []  # still within what was streamed before
            if self.text.startswith(self.streamed):
                text = self.text[len(self.streamed) :]
            self.streamed = ""
        shown = (
            []
            if self.images_shown
            else [Delta(RunEvent.MESSAGE_DELTA, {"content": [p]}) for p in self._image_parts(True)]
        )
        self.images_shown = True
        value = {"value": text, **({"annotations": []} if first else {})}
        part = {"index": len(self.images), "type": "text", "text": value}
        return [*shown, Delta(RunEvent.MESSAGE_DELTA, {"content": [part]})]

    def _image_parts(self, indexed: bool = False) -> list[dict[str, Any]]:
        return [
            {**({"index": n} if indexed else {}), "type": "image_file", "image_file": {"file_id": file_id}}
            for n, file_id in enumerate(self.images)
        ]

    def _fragment(self, chunk: ToolCallDelta) -> Delta | None:
        hosted = self.hosted_calls.get(chunk.index)
        if hosted is None and chunk.name in self.hosted and chunk.index not in self._function_indexes():
            hosted = HostedCall(chunk.index, chunk.id or "call_" + secrets.token_hex(12), chunk.name)
            self.hosted_calls[chunk.index] = hosted
            entry = hosted.opening()
            more = hosted.fragment(chunk.arguments)
            if more is not None:
                entry[hosted.type] = {**entry[hosted.type], **more[hosted.type]}
            return _step_delta(entry)
        if hosted is not None:
            more = hosted.fragment(chunk.arguments)
            return _step_delta(more) if more is not None else None
        position = self._function_indexes().get(chunk.index)
        if position is None:
            call_id = chunk.id or "call_" + secrets.token_hex(12)
            function = {"name": chunk.name or "", "arguments": chunk.arguments}
            self.calls.append(
                {"id": call_id, "type": "function", "function": function, "_index": chunk.index}
            )
            entry = {
                "index": chunk.index,
                "id": call_id,
                "type": "function",
                "function": {**function, "output": None},
            }
        else:
            self.calls[position]["function"]["arguments"] += chunk.arguments
            entry = {"index": chunk.index, "type": "function", "function": {"arguments": chunk.arguments}}
        return _step_delta(entry)

    def _function_indexes(self) -> dict[int, int]:
        """The model's index of each function call → its place in `calls`."""
        return {call["_index"]: position for position, call in enumerate(self.calls)}

    # --- what the step stores -----------------------------------------------------------------------

    def content(self) -> list[dict[str, Any]] | None:
        """The message's content, for a text call: its images, then its text."""
        if self.kind is not StepType.MESSAGE_CREATION:
            return None
        return [*self._image_parts(), {"type": "text", "text": {"value": self.text, "annotations": []}}]

    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }

    def function_calls(self) -> list[dict[str, Any]]:
        """The function calls as the run's required_action lists them."""
        return [{key: value for key, value in call.items() if key != "_index"} for call in self.calls]

    def tool_calls(self, hosted: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The calls as the step stores them, in the model's order: function calls waiting for their
        outputs, server-side calls as `hosted` (index → stored call) has them done."""
        hosted = hosted or {}
        entries = [
            (call["_index"], {**self.function_calls()[n], "function": {**call["function"], "output": None}})
            for n, call in enumerate(self.calls)
        ]
        entries += [(index, hosted[index]) for index in self.hosted_calls if index in hosted]
        return [entry for _index, entry in sorted(entries, key=lambda item: item[0])]

    # --- how it ends ----------------------------------------------------------------------------------

    def ending(self, *, cancelled: bool) -> Ending:
        if cancelled:
            return Ending(RunStatus.CANCELLED)
        if self.calls:
            calls = self.function_calls()
            required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
            return Ending(RunStatus.REQUIRES_ACTION, {"required_action": required})
        if self.hosted_calls:
            return Ending(RunStatus.IN_PROGRESS)  # run the server-side tools, then call the model again
        if self.finish == "length":
            return Ending(RunStatus.INCOMPLETE, {"incomplete_details": {"reason": "max_completion_tokens"}})
        return Ending(RunStatus.COMPLETED)


def _storable_call(chunk: ToolCallDelta) -> ToolCallDelta:
    if all(storable(text) is text for text in (chunk.id or "", chunk.name or "", chunk.arguments)):
        return chunk  # the usual case: nothing to replace, nothing copied
    return dataclasses.replace(
        chunk,
        id=storable(chunk.id) if chunk.id else chunk.id,
        name=storable(chunk.name) if chunk.name else chunk.name,
        arguments=storable(chunk.arguments),
    )


def _step_delta(entry: dict[str, Any]) -> Delta:
    return Delta(RunEvent.STEP_DELTA, {"step_details": {"type": "tool_calls", "tool_calls": [entry]}})


def failed(code: str, message: str) -> Ending:
    return Ending(RunStatus.FAILED, {"last_error": {"code": code, "message": storable(message)}})


def add_usage(before: dict[str, int] | None, call: dict[str, int]) -> dict[str, int]:
    """The run's usage once this call is counted (a run adds up all its calls)."""
    before = before or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {key: before[key] + call[key] for key in before}
