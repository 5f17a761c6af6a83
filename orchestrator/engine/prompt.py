"""Build the model's view of a run, the way the Assistants API does: instructions, the thread's messages
(truncated by `truncation_strategy` and `max_prompt_tokens`), and this run's tool calls with their outputs.

Truncation only ever drops thread messages, oldest first; the system message, this run's tool rounds
(an assistant tool_calls message followed by its tool results) and the latest thread message are always
sent. `max_prompt_tokens` is a budget for the whole run, as the Assistants API defines it: each turn gets
what earlier turns of the run left. A turn that cannot fit its required part ends the run `incomplete`
with reason `max_prompt_tokens`. `truncation_strategy: auto` drops nothing beyond that budget: an upstream
whose context is too small answers 400, and the run fails with `invalid_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db import models, steps
from orchestrator.domain import hosted_tools
from orchestrator.domain.model import ModelRequest
from orchestrator.engine import hosted
from orchestrator.providers import tokens

# A message in time order: (created_us, chat-completions message).
Timed = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Prompt:
    request: ModelRequest | None
    # Set when the run cannot start its turn: the contract's incomplete reason.
    incomplete_reason: str | None = None


@dataclass(frozen=True)
class Material:
    """Everything a turn's prompt is made of, read from the database in one pass (`gather`)."""

    thread: list[Timed]  # the thread's messages, oldest first
    rounds: list[Timed]  # this run's completed tool rounds
    has_stores: bool  # file_search has a vector store to search


def build(session: Session, run: models.Run) -> Prompt:
    """Read, then compose: the database is done with before the tools and the token counter start."""
    material = gather(session, run)
    return compose(run, material.thread, material.rounds, has_stores=material.has_stores)


def gather(session: Session, run: models.Run) -> Material:
    # A run's first call has no tool rounds yet: no need to look.
    rounds = _tool_rounds(session, run) if run.turn else []
    searching = any(t.get("type") == "file_search" for t in run.tools)
    return Material(
        _thread_messages(session, run), rounds, searching and bool(hosted.store_ids(session, run))
    )


def compose(run: models.Run, thread: list[Timed], rounds: list[Timed], *, has_stores: bool = False) -> Prompt:
    """The request for the next turn of `run`, from its thread's messages and its own tool rounds, without
    I/O. The run's server-side tools are offered as functions of reserved names (domain/hosted_tools.py).
    Every message's tokens are counted once, and truncation works on those counts."""
    instructions = _instructions(run)
    system = [{"role": "system", "content": instructions}] if instructions else []
    offered = hosted_tools.offered(run.tools, has_stores=has_stores)
    tools = [t for t in run.tools if t.get("type") == "function"] + [
        hosted_tools.FUNCTIONS[n] for n in offered
    ]
    thread = keep_last(thread, run.truncation_strategy)
    fixed = [m for _at, m in rounds] + system
    overhead = tokens.count_tools(tools, run.model)
    fixed_cost, costs = _costs(fixed, thread, run.model)
    if run.max_prompt_tokens is not None:
        kept = _fitting(costs, fixed_cost, remaining_budget(run) - overhead)
        if kept is None:
            return Prompt(None, "max_prompt_tokens")
        thread, costs = thread[len(thread) - kept :], costs[len(costs) - kept :]
    messages = system + [m for _at, m in sorted(thread + rounds, key=lambda item: item[0])]
    choice = tool_choice_for(run.tool_choice, offered, rounds)
    return Prompt(request(run, messages, tools, choice, fixed_cost + sum(costs) + overhead, offered))


def request(
    run: models.Run, messages: list, tools: list, tool_choice: Any, prompt_tokens: int, offered: list[str]
) -> ModelRequest:
    """A call's request, for either face: its messages and tools, and the run's own model settings."""
    return ModelRequest(
        model=run.model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=run.parallel_tool_calls,
        response_format=run.response_format,
        temperature=run.temperature,
        top_p=run.top_p,
        max_completion_tokens=run.max_completion_tokens,
        prompt_tokens=prompt_tokens,
        hosted=tuple(offered),
    )


def tool_choice_for(choice: Any, offered: list[str], rounds: list[Timed]) -> Any:
    """A forced server-side tool is forced once: after its call the model must be free to answer."""
    forced = hosted_tools.forced(choice)
    if forced is None:
        return choice
    forced_now = forced in offered and not rounds
    return {"type": "function", "function": {"name": forced}} if forced_now else "auto"


def keep_last(thread: list[Timed], strategy: dict[str, Any] | None) -> list[Timed]:
    """`truncation_strategy: last_messages N` keeps the N most recent thread messages."""
    strategy = strategy or {}
    count = strategy.get("last_messages")
    if strategy.get("type") != "last_messages" or not count:
        return thread
    return thread[-count:]


def remaining_budget(run: models.Run) -> int:
    """What is left of `max_prompt_tokens` after the prompts of this run's earlier turns."""
    used = (run.usage or {}).get("prompt_tokens", 0)
    return run.max_prompt_tokens - used


def fit(thread: list[Timed], fixed: list[dict], budget: int, model: str | None = None) -> list[Timed] | None:
    """Drop the oldest thread messages until the prompt fits `budget`; None when even the latest alone
    (with the fixed part) does not."""
    fixed_cost, costs = _costs(fixed, thread, model)
    kept = _fitting(costs, fixed_cost, budget)
    return None if kept is None else thread[len(thread) - kept :]


def _costs(fixed: list[dict], thread: list[Timed], model: str | None) -> tuple[int, list[int]]:
    """The fixed part's tokens (with the reply's priming) and each thread message's, counted once."""
    fixed_cost = tokens.count_messages(fixed, model)
    return fixed_cost, [tokens.count_message(message, model) for _at, message in thread]


def _fitting(costs: list[int], fixed_cost: int, budget: int) -> int | None:
    """How many of the newest messages fit beside the fixed part: at least the latest one, else None."""
    total, kept = fixed_cost + sum(costs), len(costs)
    while kept > 1 and total > budget:
        total -= costs[len(costs) - kept]
        kept -= 1
    return kept if total <= budget else None


def _instructions(run: models.Run) -> str:
    return "\n\n".join(part for part in (run.instructions, run.additional_instructions) if part)


def _thread_messages(session: Session, run: models.Run) -> list[Timed]:
    rows = session.scalars(
        select(models.Message)
        .where(models.Message.thread_id == run.thread_id)
        .order_by(models.Message.created_us, models.Message.id)
    )
    return [(row.created_us, message) for row in rows if (message := thread_message(row.role, row.content))]


def thread_message(role: str, blocks: list[dict]) -> dict[str, Any] | None:
    """A stored message as a chat message: its text, and its image URLs as image parts. Image files are
    left out (there is no file store an upstream could fetch them from); an empty message is None."""
    texts = [b["text"]["value"] for b in blocks if b.get("type") == "text"]
    images = [
        {"type": "image_url", "image_url": b["image_url"]} for b in blocks if b.get("type") == "image_url"
    ]
    if images:
        return {"role": role, "content": [{"type": "text", "text": text} for text in texts] + images}
    content = "\n".join(texts)
    return {"role": role, "content": content} if content else None


def _tool_rounds(session: Session, run: models.Run) -> list[Timed]:
    return [
        item
        for step in steps.tool_steps(session, run.id)
        for item in tool_round(step.created_us, step.step_details)
    ]


def tool_round(at: int, details: dict[str, Any]) -> list[Timed]:
    """One completed tool_calls step as an assistant tool_calls message followed by one tool message per
    call; times are offset by one microsecond each to keep them in that order."""
    calls = [_as_function(c) for c in details["tool_calls"]]
    if not calls:
        return []
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": id_, "type": "function", "function": function} for id_, function, _out in calls
        ],
    }
    results = [
        (at + offset, {"role": "tool", "tool_call_id": id_, "content": output or ""})
        for offset, (id_, _function, output) in enumerate(calls, start=1)
    ]
    return [(at, assistant), *results]


def _as_function(call: dict[str, Any]) -> tuple[str, dict[str, str], str | None]:
    """A stored call as the model made it: (id, function, output); server-side calls included."""
    if call["type"] == "function":
        function = call["function"]
        return call["id"], {"name": function["name"], "arguments": function["arguments"]}, function["output"]
    function, output = hosted_tools.model_view(call)
    return call["id"], function, output
