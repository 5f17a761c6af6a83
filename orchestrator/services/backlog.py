"""What a watcher missed, read in bounded pages: the stored lifecycle events after its cursor merged, in
sequence order, with the buffered deltas after it.

A page is read only when the previous one has been consumed, and the relay consumes it only as its
client's socket drains, so a replay of any length costs a watcher at most one page of each source (plus
one write) however slowly its client reads. No database connection is held between pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import select

from orchestrator.adapters.ports import EventBus
from orchestrator.db import models
from orchestrator.services.context import Context

# What a watcher holds of each source at a time: a decoded delta costs about 3 KB of Python objects.
PAGE = 500  # numbers and names only
DELTA_PAGE = 50

Item = tuple[int, str, dict]


def backlog(ctx: Context, run_id: str, cursor: int, known: Callable[[], int]) -> Iterator[Item]:
    """Every event after `cursor`, in sequence order. A delta is yielded only when its block's lifecycle
    predecessor (`prev`) is at or below `known()` (the last lifecycle event the caller sent or accounted
    for) at that moment: one beyond it belongs after an event that was committed after the log was read,
    and comes by the live feed instead."""
    events = _stored(ctx, run_id, cursor)
    deltas = _buffered(ctx.bus, run_id, cursor)
    event, delta = next(events, None), next(deltas, None)
    while event is not None or delta is not None:
        if delta is None or (event is not None and event[0] < delta[0]):
            yield event[0], event[1], _data(ctx, run_id, event[0])
            event = next(events, None)
            continue
        if delta[2].get("prev", 0) <= known():
            yield delta[0], delta[1], delta[2]["data"]
        delta = next(deltas, None)


def _stored(ctx: Context, run_id: str, after: int) -> Iterator[tuple[int, str]]:
    """The stored events' numbers and names only: one event's data can be a whole message, and a watcher
    stalled in the deltas before it would hold it all that time, so it is read when its turn comes."""
    while True:
        with ctx.uow() as uow:
            page = list(
                uow.session.execute(
                    select(models.RunEvent.seq, models.RunEvent.event)
                    .where(models.RunEvent.run_id == run_id, models.RunEvent.seq > after)
                    .order_by(models.RunEvent.seq)
                    .limit(PAGE)
                )
            )
        yield from ((seq, event) for seq, event in page)
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _data(ctx: Context, run_id: str, seq: int) -> dict:
    with ctx.uow() as uow:
        return uow.session.scalar(
            select(models.RunEvent.data).where(models.RunEvent.run_id == run_id, models.RunEvent.seq == seq)
        )


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
    with ctx.uow() as uow:
        latest = uow.session.execute(
            select(models.RunEvent.seq, models.RunEvent.event)
            .where(models.RunEvent.run_id == run_id)
            .order_by(models.RunEvent.seq.desc())
            .limit(1)
        ).first()
    return latest is not None and latest.seq <= cursor and latest.event in leg_ends
