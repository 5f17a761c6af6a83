"""The run event log: every lifecycle event gets a per-run sequence number and a row in the transaction
that caused it, and reaches live watchers only after that transaction commits.

A unit of work owns an `EventLog`: services `record` events as the work happens; the run store's UPDATE of
the run's row numbers them in the same statement (`counters`, then `numbered` with the row it returned),
or, for events no such statement numbered, one UPDATE at commit does. Then the rows are inserted, the
transaction commits, and the events are published: the only way a run event is emitted.

Deltas are not stored in Postgres. A worker reserves a block of sequence numbers when it opens a step
(`reserve_deltas`), numbers its deltas from that block, and later events are numbered after it, so every
event of a run, stored or not, has a unique, monotonic `seq`. Each event carries `prev`, the last lifecycle
event before it, so a watcher can tell when it missed one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Double, Integer, String, Text, bindparam, cast, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from orchestrator.adapters.ports import EventBus, event_json
from orchestrator.db import models
from orchestrator.db.connection import on_postgres
from orchestrator.domain.lifecycle import RunEvent

DELTA_BLOCK = 10_000


def counters(count: int, *, reserve_deltas: bool = False) -> dict[str, Any]:
    """The SET values of an UPDATE on a run that numbers `count` events (and reserves a block of delta
    numbers after them). SET sees the row's old values, so `lifecycle_prev` keeps the last lifecycle
    event before them."""
    run = models.Run.__table__.c  # Core columns: the statement stays Core (db/runs.py)
    block = DELTA_BLOCK if reserve_deltas else 0
    if not count:
        return {"event_seq": run.event_seq + block} if block else {}
    return {
        "lifecycle_prev": run.lifecycle_seq,
        "lifecycle_seq": run.event_seq + count,
        "event_seq": run.event_seq + count + block,
    }


@dataclass
class _RunEvents:
    tenant_id: str
    events: list[tuple[RunEvent, dict]] = field(default_factory=list)
    first: int | None = None  # the first number allocated, once a statement allocated them
    prev: int = 0
    allocated: int = 0
    new: bool = False  # the run was created in this unit of work
    stored: bool = False  # its events went in with the run's own INSERT (`stored_with_run`)


class EventLog:
    def __init__(self) -> None:
        self._runs: dict[str, _RunEvents] = {}
        self._stored: list[tuple[str, list[dict], bool]] = []
        self._committed: dict[str, list[dict]] = {}

    def record(self, run_id: str, tenant_id: str, event: RunEvent, data: dict) -> None:
        run = self._of(run_id, tenant_id)
        if run.stored:
            raise RuntimeError(f"an event of {run_id} recorded after its events were stored")
        run.events.append((event, data))

    def stored_with_run(self, run_id: str) -> list[dict]:
        """A new run's events (numbered by `numbered_new`), for the run's own INSERT to store (one
        statement fewer): the commit then stores nothing more of the run, and publishes as usual."""
        run = self._runs[run_id]
        if not run.new or run.allocated != len(run.events):
            raise RuntimeError(f"{run_id}: only a new run's numbered events are stored with it")
        numbered = self._numbered(run)
        self._stored.append((run_id, numbered, True))
        run.events, run.stored = [], True
        return numbered

    def pending(self, run_id: str) -> int:
        run = self._runs.get(run_id)
        return len(run.events) if run else 0

    def numbered(self, run_id: str, tenant_id: str, row: Any, count: int) -> None:
        """The run's row as an UPDATE with `counters(count)` returned it: `count` numbers are this unit of
        work's events of the run, those recorded so far and those to be recorded before commit."""
        run = self._of(run_id, tenant_id)
        if run.first is not None:
            raise RuntimeError(f"events of {run_id} numbered twice in one unit of work")
        run.first, run.prev, run.allocated = row.lifecycle_seq - count + 1, row.lifecycle_prev, count

    def numbered_new(self, run: models.Run, count: int) -> None:
        """A run inserted in this unit of work: its first `count` events are numbered 1…count."""
        run.event_seq = run.lifecycle_seq = count
        run.lifecycle_prev = 0
        events = self._of(run.id, run.tenant_id)
        events.first, events.allocated, events.new = 1, count, True

    def flush(self, session: Session, now: float) -> None:
        """Number what no statement numbered, and insert every event row; before the commit."""
        session.flush()  # rows this unit of work added (a new run) before the events that reference them
        for run_id, run in self._runs.items():
            if not run.events:
                continue
            if run.first is None:
                self._allocate(session, run_id, run)
            if run.allocated != len(run.events):
                raise RuntimeError(f"{run_id}: {run.allocated} event numbers for {len(run.events)} events")
            numbered = self._numbered(run)
            _insert(session, run_id, run.tenant_id, numbered, now)
            self._stored.append((run_id, numbered, run.new))
        self._runs.clear()

    def committed(self) -> list[tuple[str, list[dict]]]:
        """After commit: what was stored, now committed (kept for `committed_of`), to be published. A run
        created in this unit of work has no watcher yet (nobody knows its id), so its events are not."""
        stored, self._stored = self._stored, []
        for run_id, events, _new in stored:
            self._committed.setdefault(run_id, []).extend(events)
        return [(run_id, events) for run_id, events, new in stored if not new]

    def committed_of(self, run_id: str) -> list[dict]:
        """The run's events this unit of work committed, as watchers get them: a stream the request itself
        opens starts with them, without reading them back from the log."""
        return list(self._committed.get(run_id, ()))

    @staticmethod
    def publish(bus: EventBus, stored: list[tuple[str, list[dict]]]) -> None:
        for run_id, events in stored:
            bus.publish(run_id, events)

    def _of(self, run_id: str, tenant_id: str) -> _RunEvents:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _RunEvents(tenant_id)
        return run

    def _allocate(self, session: Session, run_id: str, run: _RunEvents) -> None:
        row = session.execute(_allocating(len(run.events)), {"run_id": run_id}).one()
        run.first, run.prev, run.allocated = (
            row.lifecycle_seq - len(run.events) + 1,
            row.lifecycle_prev,
            len(run.events),
        )

    @staticmethod
    def _numbered(run: _RunEvents) -> list[dict]:
        """The events as watchers get them: each with its number and the one before it."""
        events, prev = [], run.prev
        for offset, (event, data) in enumerate(run.events):
            seq = run.first + offset
            # Encoded once, here: the log stores this text, and Redis and the SSE frames carry it as it is.
            events.append(
                {"seq": seq, "prev": prev, "event": str(event), "data": data}
                | {"data_json": event_json(data)}
            )
            prev = seq
        return events


def _insert(session: Session, run_id: str, tenant_id: str, events: list[dict], now: float) -> None:
    """The events' rows, their data as encoded. On Postgres one statement of arrays, whatever the count:
    a fraction of the CPU of an executemany (which goes through psycopg's pipeline mode) or of a
    multi-row VALUES (SQLAlchemy processes each of its parameters)."""
    if on_postgres(session):
        session.execute(unnesting(), unnesting_params(run_id, tenant_id, events, now))
    else:
        common = {"run_id": run_id, "tenant_id": tenant_id, "created_at": now}
        rows = [common | {"seq": e["seq"], "event": e["event"], "data": e["data_json"]} for e in events]
        session.execute(_INSERTING, rows)


@functools.cache
def unnesting():
    """INSERT the events of one run from arrays (`unnesting_params`; Postgres). Also a CTE of the INSERT of
    a new run, which stores the run's first events with it (db/runs.py)."""
    arrays = (
        func.unnest(
            bindparam("e_seqs", type_=ARRAY(Integer)),
            bindparam("e_events", type_=ARRAY(String)),
            # Text cast in SQL: a JSONB array parameter would encode each (already encoded) element again.
            cast(bindparam("e_datas", type_=ARRAY(Text)), ARRAY(JSONB)),
        )
        .table_valued("seq", "event", "data")
        .render_derived(name="e")
    )
    rows = select(
        bindparam("e_run", type_=String),
        bindparam("e_tenant", type_=String),
        arrays.c.seq,
        arrays.c.event,
        arrays.c.data,
        bindparam("e_now", type_=Double),
    ).select_from(arrays)
    columns = ["run_id", "tenant_id", "seq", "event", "data", "created_at"]
    return insert(models.RunEvent.__table__).from_select(columns, rows)


def unnesting_params(run_id: str, tenant_id: str, events: list[dict], now: float) -> dict[str, Any]:
    return {
        "e_run": run_id,
        "e_tenant": tenant_id,
        "e_now": now,
        "e_seqs": [e["seq"] for e in events],
        "e_events": [e["event"] for e in events],
        "e_datas": [e["data_json"] for e in events],
    }


# SQLite (orchestrator dev) stores JSON as its text.
_INSERTING = text(
    "INSERT INTO run_events (run_id, tenant_id, seq, event, data, created_at)"
    " VALUES (:run_id, :tenant_id, :seq, :event, :data, :created_at)"
)


@functools.lru_cache(maxsize=64)
def _allocating(count: int):
    run = models.Run.__table__.c
    return (
        update(models.Run.__table__)
        .where(run.id == bindparam("run_id"))
        .values(**counters(count))
        .returning(run.lifecycle_seq, run.lifecycle_prev)
    )


def events_after(session: Session, run_id: str, after: int, limit: int = 1000) -> list[dict]:
    rows = session.execute(
        select(models.RunEvent.seq, models.RunEvent.event, models.RunEvent.data)
        .where(models.RunEvent.run_id == run_id, models.RunEvent.seq > after)
        .order_by(models.RunEvent.seq)
        .limit(limit)
    )
    return [{"seq": seq, "event": event, "data": data} for seq, event, data in rows]
