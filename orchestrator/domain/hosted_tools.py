"""The server-side tools (file_search, code_interpreter) as a model sees them and as a step shows them,
with no database, network or clock.

A model calls a server-side tool as a function of a reserved name: `file_search(queries)` and
`python(code)`. The run's step shows the call in the Assistants shape instead (`file_search` with its
results, `code_interpreter` with its input and outputs); the model gets the results back as the tool
message of its call, rendered here. Search results are numbered with markers such as `【3:0†notes.md】`
(the step's turn, the result's index): a reply that quotes one gets a `file_citation` annotation.

    offered(run tools, has stores)      the reserved functions a call is given
    HostedCalls: streamed arguments ──▶ step deltas (the code_interpreter input as the model writes it)
    public(details, with_content)       a step's details as the API shows them
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.storable import storable

FILE_SEARCH = "file_search"
PYTHON = "python"
TOOL_TYPE = {FILE_SEARCH: "file_search", PYTHON: "code_interpreter"}
RANKER = "default_2024_08_21"
DEFAULT_MAX_RESULTS = 20

FUNCTIONS = {
    FILE_SEARCH: {
        "type": "function",
        "function": {
            "name": FILE_SEARCH,
            "description": "Search the files the user gave you. Quote what you use and cite each result "
            "with its marker, such as 【3:0†notes.md】, exactly as given.",
            "parameters": {
                "type": "object",
                "properties": {
                    "queries": {"type": "array", "items": {"type": "string"}, "description": "search queries"}
                },
                "required": ["queries"],
            },
        },
    },
    PYTHON: {
        "type": "function",
        "function": {
            "name": PYTHON,
            "description": "Run Python code in a stateful sandbox with no network. Variables and files in "
            "/mnt/data persist for this conversation; the user's files are there. Refer to a file you "
            "write as sandbox:/mnt/data/NAME.",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "the Python code to run"}},
                "required": ["code"],
            },
        },
    },
}

MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
SANDBOX_PATH = re.compile(r"sandbox:/mnt/data/([^\s)\]\"'<>]+)")


def offered(tools: list[dict[str, Any]], *, has_stores: bool) -> list[str]:
    """The reserved functions a model call is given: code_interpreter's always when it is a tool of the
    run, file_search's only when there is a store to search. A function tool of the same name wins."""
    types = {tool.get("type") for tool in tools}
    own = {(tool.get("function") or {}).get("name") for tool in tools if tool.get("type") == "function"}
    names = []
    if "file_search" in types and has_stores:
        names.append(FILE_SEARCH)
    if "code_interpreter" in types:
        names.append(PYTHON)
    return [name for name in names if name not in own]


def forced(tool_choice: Any) -> str | None:
    """The reserved function `tool_choice: {"type": "file_search" | "code_interpreter"}` forces."""
    if isinstance(tool_choice, dict):
        kind = tool_choice.get("type")
        return next((name for name, type_ in TOOL_TYPE.items() if type_ == kind), None)
    return None


def search_options(tools: list[dict[str, Any]]) -> tuple[int, float]:
    """The run's file_search tool's max_num_results and score_threshold."""
    for tool in tools:
        if tool.get("type") == "file_search":
            options = tool.get("file_search") or {}
            ranking = options.get("ranking_options") or {}
            return (
                int(options.get("max_num_results") or DEFAULT_MAX_RESULTS),
                float(ranking.get("score_threshold") or 0.0),
            )
    return DEFAULT_MAX_RESULTS, 0.0


def search_ranker(tools: list[dict[str, Any]]) -> str | None:
    """The run's file_search tool's `ranking_options.ranker`, when it names one."""
    for tool in tools:
        if tool.get("type") == "file_search":
            return ((tool.get("file_search") or {}).get("ranking_options") or {}).get("ranker")
    return None


# --- calls as they stream -------------------------------------------------------------------------------


@dataclass
class PartialCode:
    """The `code` of a streamed `{"code": "..."}` arguments object, decoded as far as it has arrived."""

    arguments: str = ""
    sent: int = 0  # characters of the code already given out

    def feed(self, fragment: str) -> str:
        """The code's characters this fragment completes."""
        self.arguments += fragment
        code = _partial_string(self.arguments, "code")
        new, self.sent = code[self.sent :], max(self.sent, len(code))
        return new


def _partial_string(text: str, key: str) -> str:
    start = re.search(rf'"{key}"\s*:\s*"', text)
    if start is None:
        return ""
    body = text[start.end() :]
    decoded, i = [], 0
    while i < len(body):
        char = body[i]
        if char == '"':
            break
        if char != "\\":
            decoded.append(char)
            i += 1
            continue
        escape = body[i : i + 6] if body[i + 1 : i + 2] == "u" else body[i : i + 2]
        if len(escape) < 2 or (escape[1] == "u" and len(escape) < 6):
            break  # the escape is not complete yet
        try:
            decoded.append(json.loads(f'"{escape}"'))
        except ValueError:
            break
        i += len(escape)
    return "".join(decoded)


@dataclass
class HostedCall:
    """A server-side tool call the model is writing: its id, tool, arguments so far."""

    index: int
    id: str
    name: str
    arguments: str = ""
    code: PartialCode = field(default_factory=PartialCode)

    @property
    def type(self) -> str:
        return TOOL_TYPE[self.name]

    def opening(self) -> dict[str, Any]:
        """The call's first step delta."""
        entry: dict[str, Any] = {"index": self.index, "id": self.id, "type": self.type}
        entry[self.type] = {"input": "", "outputs": []} if self.name == PYTHON else {}
        return entry

    def fragment(self, arguments: str) -> dict[str, Any] | None:
        """A step delta for more of the call's arguments (None when it shows nothing new)."""
        self.arguments += arguments
        if self.name != PYTHON:
            return None
        new = storable(self.code.feed(arguments))  # a `\u0000` escape decodes to what Postgres refuses
        if not new:
            return None
        return {"index": self.index, "type": self.type, "code_interpreter": {"input": new}}

    def parsed(self) -> dict[str, Any]:
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def queries(self, fallback: str) -> list[str]:
        value = self.parsed().get("queries")
        if isinstance(value, str):
            value = [value]
        queries = [q for q in value or [] if isinstance(q, str) and q.strip()]
        return queries or [fallback]

    def source(self) -> str:
        code = self.parsed().get("code")
        return code if isinstance(code, str) else _partial_string(self.arguments, "code")


# --- what the model reads back ----------------------------------------------------------------------------


def search_text(turn: int, results: list[dict[str, Any]]) -> str:
    """file_search results as the model reads them, each under its citation marker."""
    if not results:
        return "No results found in the files."
    blocks = []
    for index, result in enumerate(results):
        text = "\n".join(part["text"] for part in result.get("content") or [])
        blocks.append(f"【{turn}:{index}†{result['file_name']}】\n{text}")
    return "\n\n".join(blocks)


NOT_RUN = "The code could not be run"


def not_run_text(reason: str) -> str:
    """What the model reads when the code never ran: it must not take it for the code's own output."""
    return f"{NOT_RUN}: {reason}"


def execution_text(logs: str, error: str | None, files: list[str]) -> str:
    """An execution as the model reads it: what it printed, its error, the files it wrote."""
    parts = [logs] if logs else []
    if error:
        parts.append(error)
    parts += [f"Wrote sandbox:/mnt/data/{name}" for name in files]
    return "\n".join(parts) or "(no output)"


def model_view(call: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A stored server-side call as the function call the model made, and its result text."""
    private = call.get("_model") or {}
    function = {"name": private.get("name", ""), "arguments": private.get("arguments", "{}")}
    return function, private.get("output", "")


# --- what the API shows --------------------------------------------------------------------------------


def public(details: dict[str, Any], *, with_content: bool = False) -> dict[str, Any]:
    """Step details without what only the engine keeps (`_` keys), and without file_search result
    content unless the request asked for it (`include[]`)."""
    calls = details.get("tool_calls")
    if not calls or all(call.get("type") == "function" for call in calls):
        return details
    shown = []
    for call in calls:
        call = {key: value for key, value in call.items() if not key.startswith("_")}
        search = call.get("file_search")
        if search is not None and not with_content:
            results = [{k: v for k, v in r.items() if k != "content"} for r in search.get("results") or []]
            call["file_search"] = {**search, "results": results}
        shown.append(call)
    return {**details, "tool_calls": shown}


def annotations(text: str, citations: dict[tuple[int, int], str], paths: dict[str, str]) -> list[dict]:
    """A reply's annotations: a `file_citation` per search marker whose result is known, a `file_path`
    per `sandbox:/mnt/data/NAME` the code wrote; `text == value[start:end]` for each."""
    found = []
    for match in MARKER.finditer(text):
        file_id = citations.get((int(match.group(1)), int(match.group(2))))
        if file_id:
            found.append(_span("file_citation", match, {"file_id": file_id}))
    for match in SANDBOX_PATH.finditer(text):
        name = match.group(1).rstrip(".,;:")
        file_id = paths.get(name)
        if file_id:
            end = match.start() + len("sandbox:/mnt/data/") + len(name)
            found.append(
                {
                    "type": "file_path",
                    "text": text[match.start() : end],
                    "start_index": match.start(),
                    "end_index": end,
                    "file_path": {"file_id": file_id},
                }
            )
    return sorted(found, key=lambda item: item["start_index"])


def _span(kind: str, match: re.Match, target: dict[str, str]) -> dict[str, Any]:
    return {
        "type": kind,
        "text": match.group(0),
        "start_index": match.start(),
        "end_index": match.end(),
        kind: target,
    }
