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
    serialize: Callable[[list[Any]], list[dict]],
) -> dict:
    """A page of `model`'s rows within `scope`, shown by `serialize`, which gets the page's rows at once
    (`each(view)` for views of one row; objects whose views read more rows read them once per page)."""
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
    return listing(serialize(rows), has_more=has_more)


def each(view: Callable[[Any], dict]) -> Callable[[list[Any]], list[dict]]:
    """`page`'s serializer for a view of one row at a time."""
    return lambda rows: [view(row) for row in rows]


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
