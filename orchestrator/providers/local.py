"""The local model: in-process, deterministic, no network (ARCHITECTURE.md, "The local model").

1. A turn that follows submitted tool outputs replies with a text containing every output verbatim.
2. Otherwise it picks function tools: tool_choice "none" → none; a named function → that one; else every
   function tool whose name appears as a whole word in the latest user message, or, if none and
   tool_choice is "required", the first function tool. parallel_tool_calls false keeps only the first.
   Arguments are the first JSON object in that message, else {}.
3. Picked tools → a tool call turn; otherwise a text containing the latest user message verbatim.

`first_token_ms` is a pause before the first chunk of any reply and `delay_ms` one between words, to stand
in for a slow model (a reasoning model can think for tens of seconds before its first token).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator

from orchestrator.domain.model import Chunk, Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from orchestrator.providers import tokens


class LocalModel:
    def __init__(self, delay_ms: int = 0, first_token_ms: int = 0):
        self._delay = delay_ms / 1000
        self._first_token = first_token_ms / 1000

    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        if self._first_token:
            time.sleep(self._first_token)
        outputs = _tool_outputs_of_last_turn(request.messages)
        if outputs is not None:
            yield from self._say(request, "Tool results: " + " | ".join(outputs))
            return
        user_text = _latest_user_text(request.messages)
        picked = pick_tools(request, user_text)
        if picked:
            yield from self._call(request, picked, first_json_object(user_text))
            return
        yield from self._say(request, f"You said: {user_text}")

    def _say(self, request: ModelRequest, text: str) -> Iterator[Chunk]:
        words = re.findall(r"\S+\s*|\s+", text) or [text]
        budget = request.max_completion_tokens
        produced = 0
        for word in words:
            cost = max(tokens.count(word), 1)
            if budget is not None and produced + cost > budget:
                yield Usage(request.prompt_tokens, produced)
                yield Finish("length")
                return
            if self._delay and produced:
                time.sleep(self._delay)
            produced += cost
            yield TextDelta(word)
        yield Usage(request.prompt_tokens, produced)
        yield Finish("stop")

    def _call(self, request: ModelRequest, names: list[str], arguments: str) -> Iterator[Chunk]:
        produced = 0
        for index, name in enumerate(names):
            if self._delay and index:
                time.sleep(self._delay)
            yield ToolCallDelta(index=index, id="call_" + secrets.token_hex(12), name=name)
            # Arguments stream in two fragments, as real models send them.
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                if fragment:
                    yield ToolCallDelta(index=index, arguments=fragment)
            produced += tokens.count(name) + tokens.count(arguments)
        yield Usage(request.prompt_tokens, produced)
        yield Finish("tool_calls")


def pick_tools(request: ModelRequest, user_text: str) -> list[str]:
    functions = [t["function"]["name"] for t in request.tools if t.get("type") == "function"]
    choice = request.tool_choice
    if choice == "none" or not functions:
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [name] if choice.get("type") == "function" and name in functions else []
    picked = [name for name in functions if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", user_text)]
    if not picked and choice == "required":
        picked = functions[:1]
    return picked[:1] if not request.parallel_tool_calls else picked


def first_json_object(text: str) -> str:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _end = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return json.dumps(value)
    return "{}"


def _latest_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, list):
                return " ".join(p["text"] for p in content if p.get("type") == "text")
            return content
    return ""


def _tool_outputs_of_last_turn(messages: list[dict]) -> list[str] | None:
    """The outputs when the conversation ends with tool results (the turn after submit_tool_outputs)."""
    outputs: list[str] = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        outputs.append(message["content"])
    return list(reversed(outputs)) if outputs else None
