"""A Response and its stream's events as the SDK reads them (contract §4, §5, §7), from the run row, the
response's echo row and its output items. No I/O.

A run's statuses map onto a Response's: `cancelling` still shows `in_progress` (the cancel is being
finished), `expired` shows `failed` with an error saying so, and a run never waits for tool outputs here
(function calls complete the response).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.db import models
from orchestrator.db.response_models import Response
from orchestrator.domain import includes
from orchestrator.domain.lifecycle import RunStatus

STATUS = {
    RunStatus.QUEUED: "queued",
    RunStatus.IN_PROGRESS: "in_progress",
    RunStatus.CANCELLING: "in_progress",
    RunStatus.COMPLETED: "completed",
    RunStatus.INCOMPLETE: "incomplete",
    RunStatus.FAILED: "failed",
    RunStatus.EXPIRED: "failed",
    RunStatus.CANCELLED: "cancelled",
}
# The event a move into each status emits; `cancelling` emits none (nothing a client sees changed).
EVENT = {
    RunStatus.QUEUED: "response.queued",
    RunStatus.IN_PROGRESS: "response.in_progress",
    RunStatus.COMPLETED: "response.completed",
    RunStatus.INCOMPLETE: "response.incomplete",
    RunStatus.FAILED: "response.failed",
    RunStatus.EXPIRED: "response.failed",
    # Not in the SDK's stream union (it has the webhook's name): the stream of a cancelled background
    # response must end with something, and the SDK passes unknown types through.
    RunStatus.CANCELLED: "response.cancelled",
}
TERMINAL_EVENTS = frozenset(EVENT[s] for s in RunStatus if s in EVENT and s.is_terminal)
EXPIRED_ERROR = {"code": "server_error", "message": "The response expired before it finished."}
# The engine's incomplete reason for a reply cut at the token limit, as the Responses API names it.
INCOMPLETE_REASON = {"max_completion_tokens": "max_output_tokens"}


def response(
    run: models.Run, echo: Response, output: list[dict[str, Any]], include: Iterable[str] = ()
) -> dict[str, Any]:
    """The Response; its items show what the create's `include` asked for, and `include` (a retrieve's)."""
    status = STATUS[run.status]
    options = echo.echo
    included = frozenset(options.get("include") or ()) | frozenset(include)
    return {
        "id": run.id,
        "object": "response",
        "created_at": run.created_at,
        "status": status,
        "background": echo.background,
        "completed_at": run.completed_at if status == "completed" else None,
        "error": _error(run),
        "incomplete_details": _incomplete(run),
        "instructions": options.get("instructions"),
        "max_output_tokens": run.max_completion_tokens,
        "max_tool_calls": options.get("max_tool_calls"),
        "model": run.model,
        "output": [shown_item(item, included) for item in output],
        "parallel_tool_calls": run.parallel_tool_calls,
        "previous_response_id": echo.previous_response_id,
        "conversation": {"id": echo.conversation_id} if echo.conversation_id else None,
        "reasoning": options.get("reasoning") or {"effort": None, "summary": None},
        "store": echo.store,
        "temperature": run.temperature,
        "text": options.get("text") or {"format": {"type": "text"}},
        "tool_choice": run.tool_choice,
        "tools": run.tools,
        "top_p": run.top_p,
        "truncation": options.get("truncation") or "disabled",
        "usage": usage(run.usage),
        "user": options.get("user"),
        "metadata": run.metadata_ or {},
        **{key: options[key] for key in ECHOED if key in options},
    }


# Accepted and shown as given; none of them changes what the engine does.
ECHOED = ("service_tier", "top_logprobs", "prompt_cache_key", "safety_identifier", "prompt")


def usage(counted: dict[str, int] | None) -> dict[str, Any] | None:
    if not counted:
        return None
    return {
        "input_tokens": counted["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": counted["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counted["total_tokens"],
    }


def _error(run: models.Run) -> dict[str, str] | None:
    if run.status is RunStatus.EXPIRED:
        return EXPIRED_ERROR
    if run.status is RunStatus.FAILED and run.last_error:
        return {"code": run.last_error["code"], "message": run.last_error["message"]}
    return None


def _incomplete(run: models.Run) -> dict[str, str] | None:
    if run.status is not RunStatus.INCOMPLETE or not run.incomplete_details:
        return None
    reason = run.incomplete_details.get("reason")
    return {"reason": INCOMPLETE_REASON.get(reason, reason)}


# --- output items ------------------------------------------------------------------------------------


def shown_item(item: dict[str, Any], included: frozenset[str] = frozenset()) -> dict[str, Any]:
    """An item as the API shows it: without what only the engine reads (keys starting with `_`, such as
    the text a server-side call's result gave the model), and with what only an `include` value shows
    only when the request asked for it (domain/includes.py)."""
    return includes.shown(public(item), included)


def public(item: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in item.items() if not key.startswith("_")}


def message(item_id: str, status: str, text: str | None = None, annotations: list | None = None) -> dict:
    content = [] if text is None else [output_text(text, annotations)]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def output_text(text: str = "", annotations: list | None = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def function_call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
