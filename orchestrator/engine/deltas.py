"""A step's deltas: numbered from the block of sequence numbers its opening reserved (another block is
reserved when one runs out) and published best effort, each with `prev`, the last lifecycle event before
its block, so a watcher knows which durable events must precede it."""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.db import runs
from orchestrator.db.events import DELTA_BLOCK
from orchestrator.domain.lifecycle import RunEvent


class DeltaStream:
    def __init__(self, ctx: Context, run_id: str, owner: str, before: int, prev: int):
        self._ctx, self._run_id, self._owner = ctx, run_id, owner
        self._seq, self._end, self._prev = before, before + DELTA_BLOCK, prev

    def publish(self, event: RunEvent, object_id: str, delta: dict) -> None:
        if self._seq + 1 >= self._end:
            self._reserve()
        self._seq += 1
        data = {"id": object_id, "object": str(event), "delta": delta}
        # Best effort and never blocking the turn: the bus batches deltas and drops them while Redis is
        # away (the durable events still carry the final objects).
        self._ctx.bus.publish_delta(
            self._run_id, {"seq": self._seq, "prev": self._prev, "event": str(event), "data": data}
        )

    def _reserve(self) -> None:
        with self._ctx.uow() as uow:
            self._seq, self._prev = runs.reserve_deltas(uow.session, self._run_id, self._owner)
            uow.commit()
        self._end = self._seq + DELTA_BLOCK
