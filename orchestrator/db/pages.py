"""Cursor pagination, O(limit) on the (scope, created_us, id) indexes (contract §2.6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.orm import Session

from orchestrator.domain.errors import InvalidRequest


def page(
    session: Session,
    model: Any,
    scope: Sequence[ColumnElement[bool]],
    *,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
    serialize: Callable[[Any], dict] | None = None,
    serialize_all: Callable[[list[Any]], list[dict]] | None = None,
) -> dict:
    """A page of `model`'s rows within `scope`, each shown by `serialize` (or all at once by `serialize_all`,
    for objects whose view reads more rows: one statement per page rather than one per object)."""
    key = tuple_(model.created_us, model.id)
    conditions = list(scope)
    ascending = order == "asc"
    if after:
        cursor = _cursor(session, model, scope, after, "after")
        conditions.append(key > cursor if ascending else key < cursor)
    if before:
        cursor = _cursor(session, model, scope, before, "before")
        conditions.append(key < cursor if ascending else key > cursor)
    # With only `before`, walk backwards from the cursor so the page touches it, then flip.
    backwards = bool(before) and not after
    forward = ascending != backwards
    ordering = (
        (model.created_us.asc(), model.id.asc()) if forward else (model.created_us.desc(), model.id.desc())
    )
    rows = list(session.scalars(select(model).where(*conditions).order_by(*ordering).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    if serialize_all is not None:
        data = serialize_all(rows)
    else:
        assert serialize is not None, "page() shows rows with serialize or serialize_all"
        data = [serialize(row) for row in rows]
    return listing(data, has_more=has_more)


def listing(data: list[dict], *, has_more: bool) -> dict:
    """A page as the API answers it: the objects, the ids at its ends, and whether more follow."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _cursor(session: Session, model: Any, scope, object_id: str, param: str):
    row = session.execute(select(model.created_us, model.id).where(*scope, model.id == object_id)).first()
    if row is None:
        raise InvalidRequest(
            f"Invalid '{param}': no object with id '{object_id}' in this list.",
            param=param,
            code="invalid_value",
        )
    return tuple_(row.created_us, row.id)
