"""The response store: the reads and writes of a response's echo row and items that the Responses face's
use cases and the engine's writer share. A response's run row is the run store's (db/runs.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.db.response_models import Response, ResponseItem, Side
from orchestrator.domain.errors import NotFound, not_found
from orchestrator.domain.lifecycle import Api

# How far a chain of previous responses is followed (a loop cannot happen: each names an older one).
MAX_CHAIN = 1000
# A background response not to be stored stays this long after its end, to be polled; then it goes.
UNSTORED_KEEP_SECONDS = 600


def load(session: Session, tenant_id: str, response_id: str) -> tuple[models.Run, Response]:
    """The response's run and echo rows; another tenant's id, or a deleted one, is not found."""
    found = session.execute(
        select(models.Run, Response)
        .join(Response, Response.id == models.Run.id)
        .where(
            models.Run.id == response_id, models.Run.tenant_id == tenant_id, models.Run.api == Api.RESPONSES
        )
    ).one_or_none()
    if found is None:
        raise not_found("response", response_id)
    return found[0], found[1]


def echo_of(session: Session, response_id: str) -> Response:
    """The response's echo row, read once per session (the claim's event and the prompt both need it; the
    identity map alone would forget it between the two, holding its objects weakly)."""
    held = session.info.setdefault("responses", {})
    if response_id not in held:
        held[response_id] = session.get(Response, response_id)
    return held[response_id]


def items(session: Session, response_id: str, side: Side) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ResponseItem.data)
        .where(ResponseItem.response_id == response_id, ResponseItem.side == side)
        .order_by(ResponseItem.position)
    )
    return list(rows)


def items_both(session: Session, response_id: str) -> tuple[list[dict], list[dict]]:
    """The response's input and output items, in one read."""
    sides: dict[Side, list[dict]] = {Side.INPUT: [], Side.OUTPUT: []}
    rows = session.execute(
        select(ResponseItem.side, ResponseItem.data)
        .where(ResponseItem.response_id == response_id)
        .order_by(ResponseItem.side, ResponseItem.position)
    )
    for side, data in rows:
        sides[side].append(data)
    return sides[Side.INPUT], sides[Side.OUTPUT]


def open_outputs(session: Session, response_id: str) -> list[tuple[int, str, dict]]:
    """The output items still in progress: (position, tenant, item)."""
    rows = session.execute(
        select(ResponseItem.position, ResponseItem.tenant_id, ResponseItem.data)
        .where(ResponseItem.response_id == response_id, ResponseItem.side == Side.OUTPUT)
        .order_by(ResponseItem.position)
    )
    return [
        (position, tenant, data) for position, tenant, data in rows if data.get("status") == "in_progress"
    ]


def ended(session: Session, response_id: str, now: int) -> Response:
    """Stamp the response's end and return its echo row: one statement."""
    return session.scalars(
        update(Response).where(Response.id == response_id).values(ended_at=now).returning(Response)
    ).one()


def item_rows(tenant_id: str, response_id: str, side: Side, given: list[dict], start: int = 0) -> list:
    return [
        ResponseItem(
            response_id=response_id,
            side=side,
            position=start + offset,
            tenant_id=tenant_id,
            item_id=item["id"],
            type=item["type"],
            data=item,
        )
        for offset, item in enumerate(given)
    ]


def put_output(
    session: Session, tenant_id: str, response_id: str, position: int, item: dict, *, new: bool = False
) -> None:
    """Write output item `position` as it is now: inserted when `new` (just added), else replaced (done),
    or inserted if it was never stored."""
    if new:
        session.add(item_rows(tenant_id, response_id, Side.OUTPUT, [item], position)[0])
        session.flush()
        return
    updated = session.execute(
        update(ResponseItem)
        .where(
            ResponseItem.response_id == response_id,
            ResponseItem.side == Side.OUTPUT,
            ResponseItem.position == position,
        )
        .values(data=item, item_id=item["id"], type=item["type"])
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:
        session.add(item_rows(tenant_id, response_id, Side.OUTPUT, [item], position)[0])
        session.flush()


def history(session: Session, tenant_id: str, previous_response_id: str) -> list[dict[str, Any]]:
    """What a response chained to `previous_response_id` carries on: every earlier response's input and
    output items, oldest first. A missing link (another tenant's, deleted, never stored) is not found."""
    chain: list[str] = []
    cursor: str | None = previous_response_id
    while cursor is not None and len(chain) < MAX_CHAIN:
        row = session.execute(
            select(Response.id, Response.previous_response_id).where(
                Response.id == cursor, Response.tenant_id == tenant_id
            )
        ).one_or_none()
        if row is None:
            if cursor == previous_response_id:
                raise NotFound(
                    f"Previous response with id '{previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            break  # an older link was deleted since: the chain starts after it
        chain.append(row.id)
        cursor = row.previous_response_id
    carried: list[dict[str, Any]] = []
    for response_id in reversed(chain):
        carried += items(session, response_id, Side.INPUT) + items(session, response_id, Side.OUTPUT)
    return carried


def count_outputs(session: Session, response_id: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(ResponseItem)
        .where(ResponseItem.response_id == response_id, ResponseItem.side == Side.OUTPUT)
    )


def delete_response(session: Session, response_id: str) -> None:
    """The run row goes, and with it (cascades) the echo, the items and the events."""
    session.execute(delete(models.Run).where(models.Run.id == response_id))


def purge_unstored(session: Session, now: int, limit: int = 500) -> int:
    """Delete ended responses that were not to be stored and are past their keeping; how many."""
    kept = case((Response.background, UNSTORED_KEEP_SECONDS), else_=0)
    ids = list(
        session.scalars(
            select(Response.id)
            .where(Response.store.is_(False), Response.ended_at.is_not(None), Response.ended_at + kept <= now)
            .limit(limit)
        )
    )
    if ids:
        session.execute(delete(models.Run).where(models.Run.id.in_(ids)))
    return len(ids)
