"""The run event log: lifecycle events get a per-run sequence number and a row, in the transaction that
caused them, and are published to live watchers only after that transaction commits.

Deltas are not stored in Postgres. A worker reserves a block of sequence numbers when it starts writing a
step (`reserve_block`), numbers its deltas from that block, and later events are numbered after it, so
every event of a run, stored or not, has a unique, monotonic `seq`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, update
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

    def write(self, uow: UnitOfWork, bus: EventBus, now: float) -> list[dict]:
        """Number and store the pending events; publish them once the unit of work commits."""
        if not self.pending:
            return []
        session = uow.session
        prev = session.scalar(
            select(func.max(models.RunEvent.seq)).where(models.RunEvent.run_id == self.run_id)
        )
        last = _bump(session, self.run_id, len(self.pending))
        first = last - len(self.pending) + 1
        events = []
        for offset, (name, data) in enumerate(self.pending):
            seq = first + offset
            events.append({"seq": seq, "prev": prev or 0, "event": name, "data": data})
            prev = seq
        session.execute(
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


def reserve_block(session: Session, run_id: str) -> int:
    """Reserve DELTA_BLOCK sequence numbers for deltas; returns the number before the block."""
    return _bump(session, run_id, DELTA_BLOCK) - DELTA_BLOCK


def _bump(session: Session, run_id: str, count: int) -> int:
    return session.execute(
        update(models.Run)
        .where(models.Run.id == run_id)
        .values(event_seq=models.Run.event_seq + count)
        .returning(models.Run.event_seq)
    ).scalar_one()


def events_after(session: Session, run_id: str, after: int, limit: int = 1000) -> list[dict]:
    rows = session.execute(
        select(models.RunEvent.seq, models.RunEvent.event, models.RunEvent.data)
        .where(models.RunEvent.run_id == run_id, models.RunEvent.seq > after)
        .order_by(models.RunEvent.seq)
        .limit(limit)
    )
    return [{"seq": seq, "event": event, "data": data} for seq, event, data in rows]
