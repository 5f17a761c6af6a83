"""A Response's output items as the engine leaves them at a move: the event the move emits (with the whole
Response, output included), the items still open closed as the end implies, and the conversation the
response continues given its items once it completed. All in the caller's unit of work.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db import conversations, models
from orchestrator.db import responses as store
from orchestrator.db.response_models import Side
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.engine.responses import wire

# The ends that give a conversation this response's items: a reply was made (whole, or cut at its limit).
CONTINUES = frozenset({RunStatus.COMPLETED, RunStatus.INCOMPLETE})


def moved(
    session: Session, row: Any, target: RunStatus, now: int, produced: list | None = None
) -> tuple[str, dict[str, Any]]:
    """The event of the move of the response's run into `target`, and the bookkeeping of an end.
    `produced`: its output items, when the caller knows them."""
    echo = store.ended(session, row.id, now) if target.is_terminal else store.echo_of(session, row.id)
    if target in CONTINUES and echo.conversation_id is not None:
        given, output = store.items_both(session, row.id)
        conversations.append(session, echo.conversation_id, [wire.public(i) for i in given + output], now)
    name = wire.EVENT.get(target, "response.in_progress")
    output = produced if produced is not None else store.items(session, row.id, Side.OUTPUT)
    shown = wire.response(row, echo, output)
    return name, {"type": name, "response": shown}


def close_open(uow: UnitOfWork, run_id: str, target: RunStatus) -> None:
    """End every output item still in progress (a cancel, an expiry, a failure mid-reply): a message keeps
    the text its stream carried, and each ends `incomplete`, with the events a stream expects."""
    session = uow.session
    for position, tenant_id, item in store.open_outputs(session, run_id):
        streamed = streamed_text(session, run_id, item["id"])
        ended, events = close(item, position, streamed, "incomplete")
        store.put_output(session, tenant_id, run_id, position, ended)
        for name, data in events:
            uow.events.record(run_id, tenant_id, name, data)


def close(item: dict, position: int, text: str, status: str) -> tuple[dict, list[tuple[str, dict]]]:
    """An open item ended with `status`, and the events that end it in a stream (A5: same identity)."""
    kind, item_id = item["type"], item["id"]
    at = {"item_id": item_id, "output_index": position}
    events: list[tuple[str, dict]] = []
    if kind == "message":
        part = wire.output_text(text, (item.get("content") or [{}])[0].get("annotations"))
        ended = {**item, "status": status, "content": [part]}
        events += [
            ("response.output_text.done", {**at, "content_index": 0, "text": text, "logprobs": []}),
            ("response.content_part.done", {**at, "content_index": 0, "part": part}),
        ]
    elif kind == "function_call":
        ended = {**item, "status": status, "arguments": text}
        events.append(("response.function_call_arguments.done", {**at, "arguments": text}))
    else:
        ended = {**item, "status": status}
    events.append(("response.output_item.done", {"output_index": position, "item": wire.shown_item(ended)}))
    return ended, [(name, {"type": name, **data}) for name, data in events]


def streamed_text(session: Session, run_id: str, item_id: str) -> str:
    """What the stream carried of an item's text (a message's) or arguments (a function call's): the
    stored deltas, joined. Read only when an item is redone or closed by someone else."""
    rows = session.scalars(
        select(models.RunEvent.data)
        .where(
            models.RunEvent.run_id == run_id,
            models.RunEvent.event.in_(
                ("response.output_text.delta", "response.function_call_arguments.delta")
            ),
        )
        .order_by(models.RunEvent.seq)
    )
    return "".join(data["delta"] for data in rows if data.get("item_id") == item_id)
