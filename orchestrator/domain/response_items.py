"""Items of the Responses and Conversations APIs, without I/O: what a client sends made into the items the
API stores and shows (contract §5), and those items made into the chat messages a model reads.

    normalize(input)  str | [input item]  ──▶  [item]   every item whole: an id, a type, a status
    to_messages(items)                    ──▶  [chat message]   what the model port takes

A string input is one user message. An "easy" message (`{"role", "content"}`, no type) is a message item;
its string content is one `input_text` part (`output_text` for the assistant). Items a client copies back
from an earlier response's output (function calls, searches, code runs, reasoning) keep their ids.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.domain.errors import InvalidRequest
from orchestrator.domain.hosted_tools import FILE_SEARCH, PYTHON
from orchestrator.domain.ids import new_id, plain_id

ROLES = ("user", "assistant", "system", "developer")
# What each item type's id starts with when the server gives it one.
ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "file_search_call": "fs",
    "code_interpreter_call": "ci",
    "reasoning": "rs",
}
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
# The text a part must carry (the model's prompt reads it).
TEXT_FIELDS = {"input_text": {"text": str}, "output_text": {"text": str}, "refusal": {"refusal": str}}
MAX_ITEMS_PER_REQUEST = 2048
# What a message's or a function call's (or its output's) `status` may be (contract §5).
STATUSES = ("in_progress", "completed", "incomplete")


def normalize(given: Any, *, param: str = "input") -> list[dict[str, Any]]:
    """The items of a request's `input` (or a conversation's `items`), each complete and with an id."""
    if isinstance(given, str):
        return [_message({"role": "user", "content": given}, param)]
    if not isinstance(given, list):
        raise InvalidRequest(f"Invalid '{param}': expected a string or an array of items.", param=param)
    if len(given) > MAX_ITEMS_PER_REQUEST:
        raise InvalidRequest(f"Invalid '{param}': at most {MAX_ITEMS_PER_REQUEST} items.", param=param)
    return [_item(item, f"{param}[{index}]") for index, item in enumerate(given)]


def _item(item: Any, param: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"Invalid '{param}': expected an object.", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, param)
    if kind == "function_call":
        _require(item, param, call_id=str, name=str, arguments=str)
        return _with_id(item, kind, param) | {"status": _status(item, param)}
    if kind == "function_call_output":
        _require(item, param, call_id=str)
        output = item.get("output")
        if not isinstance(output, str | list):
            raise InvalidRequest(f"Invalid '{param}.output': expected a string.", param=f"{param}.output")
        return _with_id(item, kind, param) | {"status": _status(item, param)}
    if kind in ("file_search_call", "code_interpreter_call", "reasoning"):
        return _with_id(item, kind, param)
    if kind == "item_reference":
        _require(item, param, id=str)
        return {"type": "item_reference", "id": _given_id(item["id"], param)}
    raise InvalidRequest(f"Invalid '{param}.type': unsupported item type '{kind}'.", param=f"{param}.type")


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"Invalid '{param}.role': expected one of {', '.join(ROLES)}.", param=f"{param}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        part = "output_text" if role == "assistant" else "input_text"
        content = [{"type": part, "text": content} | ({"annotations": []} if role == "assistant" else {})]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid '{param}.content': expected a string or an array of parts.", param=f"{param}.content"
        )
    allowed = INPUT_PARTS + (OUTPUT_PARTS if role == "assistant" else ())
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        if not isinstance(part, dict) or part.get("type") not in allowed:
            raise InvalidRequest(
                f"Invalid '{where}.type': expected one of {', '.join(allowed)}.", param=f"{where}.type"
            )
        _require(part, where, **TEXT_FIELDS.get(part["type"], {}))
    return {
        "id": _id(item, "message", param),
        "type": "message",
        "role": role,
        "status": _status(item, param),
        "content": content,
    }


def _with_id(item: dict[str, Any], kind: str, param: str) -> dict[str, Any]:
    """The item with its type and an id; keys starting with `_` are the engine's own (what a call's
    model read, the files it wrote), never taken from a client."""
    kept = {key: value for key, value in item.items() if not key.startswith("_")}
    return {**kept, "type": kind, "id": _id(item, kind, param)}


def _id(item: dict[str, Any], kind: str, param: str) -> str:
    """The id the client gave (kept: it may be copied from an earlier output), else a new one."""
    given = item.get("id")
    return new_id(ID_PREFIX[kind]) if given is None or given == "" else _given_id(given, param)


def _given_id(given: Any, param: str) -> str:
    # Ids are stored in 64-character columns and name items in URLs (conversation items).
    if not isinstance(given, str) or not plain_id(given):
        raise InvalidRequest(
            f"Invalid '{param}.id': expected a string of letters, digits, '-' or '_', at most 64 long.",
            param=f"{param}.id",
            code="invalid_value",
        )
    return given


def _status(item: dict[str, Any], param: str) -> str:
    status = item.get("status") or "completed"
    if status not in STATUSES:
        raise InvalidRequest(
            f"Invalid '{param}.status': expected one of {', '.join(STATUSES)}.",
            param=f"{param}.status",
            code="invalid_value",
        )
    return status


def _require(item: dict[str, Any], param: str, **fields: type) -> None:
    for name, kind in fields.items():
        if not isinstance(item.get(name), kind):
            raise InvalidRequest(f"Missing required parameter: '{param}.{name}'.", param=f"{param}.{name}")


# --- what a model reads -------------------------------------------------------------------------------


def to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for the model: each message item one message (a developer's is a system message);
    consecutive calls one assistant message with tool calls, each followed by its output's tool message.
    A server-side call is shown as the model made it: a call of its reserved function and its result, as
    the model read it then (`_model`: search results under their citation markers, the files code wrote),
    or rebuilt from the item (one a client sent back, or carried from another response)."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            message = _chat_message(item)
            if message is not None:
                messages.append(message)
        elif kind == "function_call":
            _call(messages, item["call_id"], item["name"], item["arguments"])
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item)})
        elif kind == "file_search_call":
            arguments = json.dumps({"queries": item.get("queries") or []})
            _call(messages, item["id"], FILE_SEARCH, arguments)
            read = item.get("_model", _search_text(item))
            messages.append({"role": "tool", "tool_call_id": item["id"], "content": read})
        elif kind == "code_interpreter_call":
            _call(messages, item["id"], PYTHON, json.dumps({"code": item.get("code") or ""}))
            read = item.get("_model", _logs(item))
            messages.append({"role": "tool", "tool_call_id": item["id"], "content": read})
    return messages


def latest_user_text(items: list[dict[str, Any]]) -> str:
    """The text of the last user message, its parts joined with a space (ARCHITECTURE.md, the local model)."""
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return " ".join(p["text"] for p in item["content"] if p.get("type") == "input_text")
    return ""


def _chat_message(item: dict[str, Any]) -> dict[str, Any] | None:
    role = "system" if item["role"] == "developer" else item["role"]
    texts = [p.get("text", "") for p in item["content"] if p["type"] in ("input_text", "output_text")]
    images = [
        {"type": "image_url", "image_url": {"url": p["image_url"]}}
        for p in item["content"]
        if p["type"] == "input_image" and p.get("image_url")
    ]
    if images and role == "user":
        return {"role": role, "content": [{"type": "text", "text": t} for t in texts] + images}
    text = "\n".join(texts)
    return {"role": role, "content": text} if text else None


def _call(messages: list[dict[str, Any]], call_id: str, name: str, arguments: str) -> None:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if (
        last is not None
        and last["role"] == "assistant"
        and last.get("tool_calls")
        and last["content"] is None
    ):
        last["tool_calls"].append(call)
        return
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output_text(item: dict[str, Any]) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    return " ".join(p.get("text", "") for p in output or [] if isinstance(p, dict))


def _search_text(item: dict[str, Any]) -> str:
    results = item.get("results") or []
    return "\n\n".join(f"{r.get('filename', '')}: {r.get('text', '')}" for r in results) or "No results."


def _logs(item: dict[str, Any]) -> str:
    outputs = item.get("outputs") or []
    return "\n".join(o.get("logs", "") for o in outputs if o.get("type") == "logs")
