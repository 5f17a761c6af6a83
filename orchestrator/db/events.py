"""The run event log: lifecycle events get a per-run sequence number and a row, in the transaction that
caused them, and are published to live watchers only after that transaction commits.

Deltas are not stored in Postgres. A worker reserves a block of sequence numbers when it starts writing a
step (`reserve_block`), numbers its deltas from that block, and later events are numbered after it, so
every event of a run, stored or not, has a unique, monotonic `seq`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from orchestrator.adapters.ports import EventBus
from orchestrator.db import models
from orchestrator.db.uow import UnitOfWork

DELTA_BLOCK = 10_000


@dataclass
class EventBatch:
    run_id: str
    tenant_id: str
    pending: list[tuple[str, dict]] = field(default_factory=list)

    def add(self, event: str, data: dict) -> None:
        self.pending.append((event, data))

    def write(
        self, uow: UnitOfWork, bus: EventBus, run: models.Run, now: float, *, reserve_deltas: bool = False
    ) -> list[dict]:
        """Number and store the pending events; publish them once the unit of work commits.

        `run` must be the run's row as locked in this transaction (a guarded UPDATE or SELECT … FOR UPDATE
        made it current), so its counters can be advanced here without another round trip. With
        `reserve_deltas`, the DELTA_BLOCK numbers right after these events are reserved for deltas: they
        start after `run.event_seq - DELTA_BLOCK`."""
        prev, first = run.lifecycle_seq, run.event_seq + 1
        events = []
        for offset, (name, data) in enumerate(self.pending):
            events.append({"seq": first + offset, "prev": prev, "event": name, "data": data})
            prev = first + offset
        if events:
            run.event_seq = run.lifecycle_seq = prev
        if reserve_deltas:
            run.event_seq += DELTA_BLOCK
        uow.session.flush()  # the run row (new, or its counters) before the events that reference it
        if not events:
            return []
        uow.session.execute(
            insert(models.RunEvent),
            [
                {
                    "run_id": self.run_id,
                    "seq": e["seq"],
                    "tenant_id": self.tenant_id,
                    "event": e["event"],
                    "data": e["data"],
                    "created_at": now,
                }
                for e in events
            ],
        )
        self.pending = []
        run_id = self.run_id
        uow.after_commit(lambda: bus.publish(run_id, events))
        return events


def reserve_block(run: models.Run) -> int:
    """Reserve DELTA_BLOCK sequence numbers for deltas on the locked run row; returns the number before it."""
    base = run.event_seq
    run.event_seq = base + DELTA_BLOCK
    return base


def events_after(session: Session, run_id: str, after: int, limit: int = 1000) -> list[dict]:
    rows = session.execute(
        select(models.RunEvent.seq, models.RunEvent.event, models.RunEvent.data)
        .where(models.RunEvent.run_id == run_id, models.RunEvent.seq > after)
        .order_by(models.RunEvent.seq)
        .limit(limit)
    )
    return [{"seq": seq, "event": event, "data": data} for seq, event, data in rows]
