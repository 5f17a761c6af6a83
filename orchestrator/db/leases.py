"""Leases on durable work, whatever its table: the statements every leased table shares, and the `Kind` the
process's LeaseKeeper (db/keeper.py) keeps each kind of work with.

A leased table has `id`, `status`, `lease_owner` and `lease_expires_at`. Its store (db/runs.py,
db/chunk_sets.py) takes the lease (claim), writes as its holder (fence) and moves the work on; the
statements whose shape does not depend on the kind of work are here: renew the leases of a set of
(id, owner) pairs, read their statuses, give one lease back. Like the stores' hot paths they are built once
per table, over its columns, and executed with bound parameters. Owner tokens are unique per hold
(`LeaseKeeper.new_owner`), so matching both lists of a set of pairs matches the pairs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from orchestrator.db import rows


@dataclass(frozen=True, eq=False)
class Kind:
    """One kind of leased work, as the keeper sees it: its table, and what a status read from it tells the
    holder. `carry_on`: keep working; `cancelled`: wind down, the work was cancelled; anything else (or no
    row this owner holds): the hold is lost."""

    name: str
    table: Table
    carry_on: frozenset[str]
    cancelled: frozenset[str] = frozenset()

    def renew(self, session: Session, held: list[tuple[str, str]], until: float) -> dict[str, Any]:
        """Extend the leases of (id, owner) pairs in one statement; the status of each still held."""
        return dict(session.execute(_renewing(self.table), {"until": until, **_pairs(held)}).all())

    def statuses(self, session: Session, held: list[tuple[str, str]]) -> dict[str, Any]:
        """The status of each (id, owner) pair the owner still holds, in one read."""
        return dict(session.execute(_reading_statuses(self.table), _pairs(held)).all())

    def release(self, session: Session, item_id: str, owner: str, **values: Any) -> None:
        """Give the lease back if `owner` holds it, setting `values` with it."""
        params = {"item_id": item_id, "owner": owner, **rows.values(values)}
        session.execute(_releasing(self.table, tuple(sorted(values))), params)


def _held_pairs(table: Table) -> tuple:
    return (
        table.c.id.in_(bindparam("ids", expanding=True)),
        table.c.lease_owner.in_(bindparam("owners", expanding=True)),
    )


@functools.cache
def _renewing(table: Table):
    return (
        update(table)
        .where(*_held_pairs(table))
        .values(lease_expires_at=bindparam("until"))
        .returning(table.c.id, table.c.status)
    )


@functools.cache
def _reading_statuses(table: Table):
    return select(table.c.id, table.c.status).where(*_held_pairs(table))


@functools.lru_cache(maxsize=16)
def _releasing(table: Table, keys: tuple[str, ...]):
    return (
        update(table)
        .where(table.c.id == bindparam("item_id"), table.c.lease_owner == bindparam("owner"))
        .values(lease_owner=None, lease_expires_at=None, **rows.bound(keys))
    )


def _pairs(held: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    held = list(held)
    return {"ids": [item_id for item_id, _owner in held], "owners": [owner for _id, owner in held]}
