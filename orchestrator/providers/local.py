"""The local model: in-process, deterministic, no network (ARCHITECTURE.md, "The local model").

1. A turn that follows submitted tool outputs replies with a text containing every output verbatim.
2. Otherwise it picks function tools: tool_choice "none" → none; a named function → that one; else every
   function tool whose name appears as a whole word in the latest user message, or, if none and
   tool_choice is "required", the first function tool. parallel_tool_calls false keeps only the first.
   Arguments are the first JSON object in that message, else {}.
3. Picked tools → a tool call turn; otherwise a text containing the latest user message verbatim.
   Structured output: with a `response_format` of type json_schema (or json_object), the text of rules 1
   and 3 is instead one JSON document built from the schema (domain/structured_output.py).
4. file_search, when offered (the run has the tool and a store) and tool_choice is not "none": a turn that
   does not follow tool results searches once with the latest user message; the turn after the search
   quotes the top result (its first 200 characters) and its citation marker, or says nothing was found.
5. code_interpreter, when offered: a fenced ```python block in the latest user message is run once; the
   turn after replies with the execution's output verbatim ("The code ran. Output: …"), or, when the code
   could not be run at all, with that reason alone.
Rules 4 and 5 come before rule 2, except that a tool_choice naming one tool forces that one: a forced
code_interpreter runs the code block and never searches, a named function is called and nothing else.

`first_token_ms` is a pause before the first chunk of any reply and `delay_ms` one between words, to stand
in for a slow model (a reasoning model can think for tens of seconds before its first token).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator

from orchestrator.domain import hosted_tools, structured_output
from orchestrator.domain.model import Chunk, Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from orchestrator.providers import tokens


class LocalModel:
    def __init__(self, delay_ms: int = 0, first_token_ms: int = 0):
        self._delay = delay_ms / 1000
        self._first_token = first_token_ms / 1000

    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        if self._first_token:
            time.sleep(self._first_token)
        last = _last_round(request.messages)
        if last is not None:
            names, outputs = last
            if names and all(name in request.hosted for name in names):
                yield from self._say(request, _after_hosted(names[-1], outputs[-1]))
                return
            yield from self._say(request, _shaped(request, "Tool results: " + " | ".join(outputs)))
            return
        user_text = _latest_user_text(request.messages)
        chosen = pick_hosted(request, user_text)
        if chosen is not None:
            yield from self._call(request, [chosen[0]], json.dumps(chosen[1]))
            return
        picked = pick_tools(request, user_text)
        if picked:
            yield from self._call(request, picked, first_json_object(user_text))
            return
        yield from self._say(request, _shaped(request, f"You said: {user_text}"))

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


def _shaped(request: ModelRequest, text: str) -> str:
    """The reply, or the JSON document its response_format asks for instead."""
    shaped = structured_output.reply(request.response_format, _latest_user_text(request.messages))
    return text if shaped is None else shaped


def pick_hosted(request: ModelRequest, user_text: str) -> tuple[str, dict] | None:
    """Rules 4 and 5: the server-side tool this turn calls, with its arguments; only the named one when
    tool_choice names a function (the engine forces a tool type as its reserved function)."""
    if request.tool_choice == "none":
        return None
    named = _named(request.tool_choice)
    order = [named] if named else [hosted_tools.FILE_SEARCH, hosted_tools.PYTHON]
    block = FENCED_PYTHON.search(user_text)
    for name in order:
        if name == hosted_tools.FILE_SEARCH and name in request.hosted:
            return name, {"queries": [user_text]}
        if name == hosted_tools.PYTHON and name in request.hosted and block:
            return name, {"code": block.group(1)}
    return None


def _named(tool_choice) -> str | None:
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        return (tool_choice.get("function") or {}).get("name")
    return None


FENCED_PYTHON = re.compile(r"```python[^\n]*\n(.*?)```", re.DOTALL)


def _after_hosted(name: str, output: str) -> str:
    if name == hosted_tools.PYTHON:
        return output if output.startswith(hosted_tools.NOT_RUN) else f"The code ran. Output:\n{output}"
    marker = hosted_tools.MARKER.search(output)
    if marker is None:
        return "I found nothing about that in the files."
    rest = output[marker.end() :].lstrip("\n")
    following = hosted_tools.MARKER.search(rest)
    quote = (rest[: following.start()] if following else rest).strip()[:200]
    return f"From the files: {quote} {marker.group(0)}"


def pick_tools(request: ModelRequest, user_text: str) -> list[str]:
    functions = [
        t["function"]["name"]
        for t in request.tools
        if t.get("type") == "function" and t["function"]["name"] not in request.hosted
    ]
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


def _last_round(messages: list[dict]) -> tuple[list[str], list[str]] | None:
    """When the conversation ends with tool results (the turn after submit_tool_outputs, or after a
    server-side tool ran): the names of the calls and their outputs, in order."""
    outputs: list[str] = []
    index = len(messages)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] != "tool":
            break
        outputs.append(messages[index]["content"])
    if not outputs:
        return None
    calls = messages[index].get("tool_calls") or [] if messages[index]["role"] == "assistant" else []
    names = [call["function"]["name"] for call in calls]
    return names, list(reversed(outputs))
