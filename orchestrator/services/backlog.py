"""What a watcher missed, read in bounded pages: the stored lifecycle events after its cursor merged, in
sequence order, with the buffered deltas after it.

A page is read only when the previous one has been consumed, and the relay consumes it only as its
client's socket drains, so a replay of any length costs a watcher at most one page of each source (plus
one write) however slowly its client reads. No database connection is held between pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.adapters.ports import EventBus
from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.connection import on_postgres

# What a watcher holds of each source at a time: a decoded delta costs about 3 KB of Python objects.
PAGE = 500  # numbers, names and sizes only
DELTA_PAGE = 50
# Stored events' data is read a group at a time: consecutive small events (each at most SMALL_BYTES
# stored, below which Postgres does not compress, so the size is the real one) up to GROUP_BYTES in all;
# a larger event (a whole message, file_search results) alone, when its turn comes. One query for a short
# run's lifecycle, while a watcher stalled in the deltas holds a few small events at most.
SMALL_BYTES = 2000
GROUP_BYTES = 16 * 1024

Item = tuple[int, str, dict]


def backlog(ctx: Context, run_id: str, cursor: int, known: Callable[[], int]) -> Iterator[Item]:
    """Every event after `cursor`, in sequence order. A delta is yielded only when its block's lifecycle
    predecessor (`prev`) is at or below `known()` (the last lifecycle event the caller sent or accounted
    for) at that moment: one beyond it belongs after an event that was committed after the log was read,
    and comes by the live feed instead."""
    events = _stored(ctx, run_id, cursor)
    deltas = _buffered(ctx.bus, run_id, cursor)
    event, delta = next(events, None), next(deltas, None)
    data: dict[int, dict] = {}
    while event is not None or delta is not None:
        if delta is None or (event is not None and event[0] < delta[0]):
            seq, name, group = event
            if seq not in data:
                # Read when its turn comes, with the small events after it: the lookahead holds no data.
                data = _data(ctx, run_id, group)
            yield seq, name, data.pop(seq)
            event = next(events, None)
            continue
        if delta[2].get("prev", 0) <= known():
            yield delta[0], delta[1], delta[2]["data"]
        delta = next(deltas, None)


def _stored(ctx: Context, run_id: str, after: int) -> Iterator[tuple[int, str, list[int]]]:
    """The stored events' numbers and names, each with the numbers of the group its data is read with
    (it and the small events after it): one event's data can be a whole message."""
    while True:
        with ctx.uow() as uow:
            size = _stored_size(uow.session)
            page = list(
                uow.session.execute(
                    select(models.RunEvent.seq, models.RunEvent.event, size)
                    .where(models.RunEvent.run_id == run_id, models.RunEvent.seq > after)
                    .order_by(models.RunEvent.seq)
                    .limit(PAGE)
                )
            )
        for group in _groups(page):
            seqs = [seq for seq, _event, _size in group]
            yield from ((seq, event, seqs) for seq, event, _size in group)
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _stored_size(session: Session):
    """The stored size of an event's data, as the database measures it cheaply."""
    if on_postgres(session):
        return func.pg_column_size(models.RunEvent.data)
    return func.length(models.RunEvent.data)


def _groups(page: list) -> Iterator[list]:
    group, used = [], 0
    for row in page:
        size = row[2] or 0
        if group and (size > SMALL_BYTES or used + size > GROUP_BYTES):
            yield group
            group, used = [], 0
        group.append(row)
        used += size
        if size > SMALL_BYTES:
            yield group
            group, used = [], 0
    if group:
        yield group


def _data(ctx: Context, run_id: str, seqs: list[int]) -> dict[int, dict]:
    with ctx.uow() as uow:
        found = uow.session.execute(
            select(models.RunEvent.seq, models.RunEvent.data).where(
                models.RunEvent.run_id == run_id, models.RunEvent.seq.in_(seqs)
            )
        )
        return dict(found.all())


def _buffered(bus: EventBus, run_id: str, cursor: int) -> Iterator[tuple[int, str, dict]]:
    """The buffered deltas after `cursor`, as (seq, event, the whole buffered entry)."""
    index = _first_after(bus, run_id, cursor)
    while True:
        page = bus.deltas(run_id, index, index + DELTA_PAGE - 1)
        yield from ((d["seq"], d["event"], d) for d in page if d["seq"] > cursor)
        if len(page) < DELTA_PAGE:
            return
        index += DELTA_PAGE


def _first_after(bus: EventBus, run_id: str, cursor: int) -> int:
    """The index of the first buffered delta after `cursor`, by bisection (a run's deltas are buffered in
    sequence order), so resuming far into a long run does not page through everything before it."""
    low, high = 0, bus.delta_count(run_id)
    while low < high:
        middle = (low + high) // 2
        probe = bus.deltas(run_id, middle, middle)
        if not probe:
            return low  # the buffer lapsed meanwhile: nothing to skip
        if probe[0]["seq"] <= cursor:
            low = middle + 1
        else:
            high = middle
    return low


def leg_ended_by(ctx: Context, run_id: str, cursor: int, leg_ends: frozenset[str]) -> bool:
    """Whether the run's latest lifecycle event is at or before `cursor` and ends a leg (a terminal status
    or requires_action): a watcher resuming there has nothing more to wait for."""
    latest = latest_event(ctx, run_id)
    return latest is not None and latest[0] <= cursor and latest[1] in leg_ends


def latest_event(ctx: Context, run_id: str) -> tuple[int, str] | None:
    """The number and name of the run's latest stored event."""
    with ctx.uow() as uow:
        latest = uow.session.execute(
            select(models.RunEvent.seq, models.RunEvent.event)
            .where(models.RunEvent.run_id == run_id)
            .order_by(models.RunEvent.seq.desc())
            .limit(1)
        ).first()
    return (latest.seq, latest.event) if latest is not None else None
