"""A Response's model call: its instructions, the items it carries on from (previous responses or its
conversation), its input and what it produced so far (server-side calls with their results), made into
the chat request the model port takes. Read first (`gather`), then composed without I/O (`compose`).

`truncation: disabled` (the default) refuses at create a request that does not fit the model's context
window (contract §3, a 400); `auto` drops the oldest carried messages until it fits. A window nobody
knows (an upstream model without `context_tokens` in its route) refuses and drops nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.db import conversations, models
from orchestrator.db import responses as store
from orchestrator.domain import hosted_tools
from orchestrator.domain.errors import InvalidRequest
from orchestrator.domain.response_items import to_messages
from orchestrator.engine.prompt import Prompt, fit, request
from orchestrator.engine.prompt import tool_choice_for as forced_once
from orchestrator.providers import tokens
from orchestrator.providers.model_routes import context_window
from orchestrator.settings import Settings

HOSTED_ITEMS = ("file_search_call", "code_interpreter_call")


def response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """`text.format` as the chat completions' `response_format` the model port passes on."""
    shape = (text or {}).get("format") or {"type": "text"}
    if shape["type"] == "json_object":
        return {"type": "json_object"}
    if shape["type"] == "json_schema":
        schema = {key: shape[key] for key in ("name", "schema", "description", "strict") if key in shape}
        return {"type": "json_schema", "json_schema": schema}
    return None


@dataclass(frozen=True)
class Gathered:
    items: list[dict[str, Any]]  # every item the call reads, oldest first
    hosted_calls: int  # server-side calls this response ran already (a forced one is forced once)
    max_tool_calls: int | None  # the request's cap on them


def gather(session: Session, run: models.Run) -> Gathered:
    """What the call reads; output items still in progress are being redone, so they are left out."""
    echo = store.echo_of(session, run.id)
    if echo.previous_response_id is not None:
        carried = store.history(session, run.tenant_id, echo.previous_response_id)
    elif echo.conversation_id is not None:
        carried = conversations.items_of(session, run.tenant_id, echo.conversation_id)
    else:
        carried = []
    given, outputs = store.items_both(session, run.id)
    produced = [i for i in outputs if i.get("status") != "in_progress"]
    hosted = sum(i.get("type") in HOSTED_ITEMS for i in produced)
    carried = [_unmarked(item) for item in carried]
    return Gathered(carried + given + produced, hosted, echo.echo.get("max_tool_calls"))


def _unmarked(item: dict[str, Any]) -> dict[str, Any]:
    """An earlier response's search without the citation markers its model read: they number that
    response's searches, and quoted here they would cite this one's."""
    if item.get("type") != "file_search_call" or "_model" not in item:
        return item
    return {key: value for key, value in item.items() if key != "_model"}


def build(session: Session, run: models.Run, settings: Settings) -> Prompt:
    gathered = gather(session, run)
    return compose(
        run,
        gathered.items,
        settings,
        hosted_calls=gathered.hosted_calls,
        max_tool_calls=gathered.max_tool_calls,
    )


def compose(
    run: models.Run,
    items: list[dict[str, Any]],
    settings: Settings,
    *,
    hosted_calls: int = 0,
    max_tool_calls: int | None = None,
) -> Prompt:
    """Without I/O. With `truncation: auto` and a known window, the oldest messages go until the rest
    fits; the latest is always sent (an upstream that cannot take it says so, and the response fails).
    Server-side tools are offered until `max_tool_calls` of them ran."""
    system = [{"role": "system", "content": run.instructions}] if run.instructions else []
    capped = max_tool_calls is not None and hosted_calls >= max_tool_calls
    offered = [] if capped else _offered(run.tools)
    tools = _functions(run.tools) + [hosted_tools.FUNCTIONS[name] for name in offered]
    messages = to_messages(items)
    overhead = tokens.count_tools(tools, run.model)
    window = context_window(run.model, settings)
    if window is not None and run.truncation_strategy.get("type") == "auto":
        kept = fit(list(enumerate(messages)), system, window - overhead, run.model)
        messages = [message for _at, message in kept] if kept is not None else messages[-1:]
    messages = system + messages
    counted = tokens.count_messages(messages, run.model) + overhead
    return Prompt(
        request(run, messages, tools, _choice(run.tool_choice, offered, hosted_calls), counted, offered)
    )


def count(model: str | None, instructions: str, tools: list[dict], items: list[dict[str, Any]]) -> int:
    """Input tokens of a request: instructions, items and tool definitions, as the model would get them."""
    system = [{"role": "system", "content": instructions}] if instructions else []
    offered = _offered(tools)
    defined = _functions(tools) + [hosted_tools.FUNCTIONS[name] for name in offered]
    return tokens.count_messages(system + to_messages(items), model) + tokens.count_tools(defined, model)


def check_fits(settings: Settings, run: models.Run, items: list[dict[str, Any]]) -> None:
    """A request with `truncation: disabled` that exceeds the model's context window is a 400."""
    if run.truncation_strategy.get("type") != "disabled":
        return
    window = context_window(run.model, settings)
    if window is None:
        return
    if count(run.model, run.instructions, run.tools, items) > window:
        raise InvalidRequest(
            "Your input exceeds the context window of this model. Please adjust your input and try again.",
            param="input",
            code="context_length_exceeded",
        )


def _offered(tools: list[dict[str, Any]]) -> list[str]:
    stores = any(t.get("type") == "file_search" and t.get("vector_store_ids") for t in tools)
    own = [
        {"type": "function", "function": {"name": t.get("name")}}
        for t in tools
        if t.get("type") == "function"
    ]
    kinds = [{"type": t["type"]} for t in tools if t.get("type") in ("file_search", "code_interpreter")]
    return hosted_tools.offered(own + kinds, has_stores=stores)


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses' function tools in the chat shape the model port takes."""
    shown = ("name", "description", "parameters", "strict")
    return [
        {"type": "function", "function": {key: t[key] for key in shown if t.get(key) is not None}}
        for t in tools
        if t.get("type") == "function"
    ]


def _choice(choice: Any, offered: list[str], hosted_calls: int) -> Any:
    """Responses' `tool_choice` in the chat shape: a named function as chat names it; a server-side
    tool's type as its reserved function, forced once; `required` until a server-side call ran (then the
    model must be free to answer with what it found)."""
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if choice == "required" and hosted_calls:
        return "auto"
    return forced_once(choice, offered, [True] if hosted_calls else [])
