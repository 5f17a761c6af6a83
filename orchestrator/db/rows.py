"""Core statements that give rows shaped like the ORM's objects, for the hot path of a run.

An ORM-enabled `UPDATE … RETURNING` builds and tracks objects; a Core one over the table with the
columns labelled by their attribute names (`metadata_`) gives read-only rows the serializers read alike,
for a fraction of the work. Use them where the result is only read.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.sql.dml import Update


def table(model: Any) -> Table:
    return model.__table__


@functools.cache
def columns(model: Any) -> tuple:
    """Every column of the model, labelled with its attribute name."""
    mapper = model.__mapper__
    return tuple(column.label(key) for key, column in zip(mapper.columns.keys(), mapper.columns, strict=True))


def updating(model: Any) -> Update:
    """`UPDATE <table>` as a Core statement: values are keyed by column name."""
    return update(table(model))
