"""Core statements that give rows shaped like the ORM's objects, for the hot path of a run.

An ORM-enabled `UPDATE … RETURNING` builds and tracks objects; a Core one over the table with the
columns labelled by their attribute names (`metadata_`) gives read-only rows the serializers read alike,
for a fraction of the work. Use them where the result is only read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from orchestrator.db.connection import on_postgres


def table(model: Any) -> Table:
    return model.__table__


@functools.cache
def columns(model: Any) -> tuple:
    """Every column of the model, labelled with its attribute name."""
    mapper = model.__mapper__
    return tuple(column.label(key) for key, column in zip(mapper.columns.keys(), mapper.columns, strict=True))


# The most rows `add` inserts in one statement of several INSERTs (more go model by model).
TOGETHER_LIMIT = 16


def add(session: Session, *objects: Any) -> None:
    """INSERT new objects' rows now, in the order given (parents first), with Core: several times cheaper
    than the ORM's flush, for the rows every run writes. The objects stay out of the session, read-only;
    columns they leave unset get their defaults, as with the ORM. On Postgres, a few rows of tables without
    column defaults go in one statement (`WITH … INSERT …`, foreign keys are checked at its end): one round
    trip where there would be one per row."""
    if 1 < len(objects) <= TOGETHER_LIMIT and _together_here(session, objects):
        shape, params = _together(objects)
        session.execute(_inserting_together(shape), params)
        return
    by_model: dict[Any, list[dict]] = {}
    for obj in objects:
        by_model.setdefault(type(obj), []).append(row(obj))
    for model, rows in by_model.items():
        for same in _by_keys(rows).values():
            session.execute(_inserting(model), same)


def before(session: Session, statement, objects: tuple) -> tuple[Any, dict[str, Any]]:
    """`statement` (an INSERT built once) preceded by the INSERTs of `objects`, in one statement where
    `add` would put them together; else they are inserted now. Returns the statement and the objects'
    parameters."""
    if len(objects) > TOGETHER_LIMIT or not _together_here(session, objects):
        add(session, *objects)
        return statement, {}
    shape, params = _together(objects)
    return _preceded(statement, shape), params


def _together(objects: tuple) -> tuple[tuple, dict[str, Any]]:
    rows = [row(obj) for obj in objects]
    shape = tuple((type(obj), tuple(values)) for obj, values in zip(objects, rows, strict=True))
    params = {f"r{i}_{key}": value for i, values in enumerate(rows) for key, value in values.items()}
    return shape, params


def with_defaults(model: Any, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the model's scalar column defaults for the columns it leaves out: a statement that
    gives them all needs none from SQLAlchemy, which leaves a top-level INSERT's defaults out when the
    statement also holds INSERTs in CTEs (`before`)."""
    missing = {
        column.name: column.default.arg
        for column in table(model).c
        if column.name not in values and column.default is not None and column.default.is_scalar
    }
    return values | missing


def _together_here(session: Session, objects: tuple) -> bool:
    # A CTE's INSERT gets no column defaults from SQLAlchemy; SQLite has no INSERT in a CTE.
    return on_postgres(session) and not any(_has_defaults(type(o)) for o in objects)


@functools.cache
def _has_defaults(model: Any) -> bool:
    return any(c.default is not None or c.server_default is not None for c in table(model).c)


@functools.lru_cache(maxsize=64)
def _inserting_together(shape: tuple[tuple[Any, tuple[str, ...]], ...]):
    """One statement inserting a row per (model, column names), each with its own parameters (`r<i>_…`)."""
    *first, last = _inserts(shape)
    return last.add_cte(*(statement.cte(f"r{i}") for i, statement in enumerate(first)))


@functools.lru_cache(maxsize=64)
def _preceded(statement, shape: tuple[tuple[Any, tuple[str, ...]], ...]):
    return statement.add_cte(*(insert.cte(f"r{i}") for i, insert in enumerate(_inserts(shape))))


def _inserts(shape: tuple[tuple[Any, tuple[str, ...]], ...]) -> list:
    return [
        insert(table(model)).values({key: bindparam(f"r{i}_{key}") for key in keys})
        for i, (model, keys) in enumerate(shape)
    ]


def row(obj: Any) -> dict[str, Any]:
    """The column values a new object was given, by column name."""
    state = obj.__dict__
    return {column.name: state[key] for key, column in _keyed_columns(type(obj)) if key in state}


def _by_keys(rows: list[dict]) -> dict[tuple, list[dict]]:
    # One executemany per set of keys: its rows must all name the same columns.
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault(tuple(row), []).append(row)
    return grouped


@functools.cache
def _keyed_columns(model: Any) -> tuple:
    mapper = model.__mapper__
    return tuple(zip(mapper.columns.keys(), mapper.columns, strict=True))


@functools.cache
def _inserting(model: Any):
    return insert(table(model))


def bound(keys: Iterable[str]) -> dict[str, Any]:
    """SET column = :v_column for each key, for a statement built once; `values` gives the parameters."""
    return {key: bindparam(f"v_{key}") for key in keys}


def values(given: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `bound(given)`."""
    return {f"v_{key}": value for key, value in given.items()}


def updating(model: Any) -> Update:
    """`UPDATE <table>` as a Core statement: values are keyed by column name."""
    return update(table(model))
