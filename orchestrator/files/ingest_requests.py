"""Asking for a chunk set to be ingested: marked in the transaction, enqueued after it commits.

A request whose enqueue is lost (a crash between commit and enqueue, Redis restarted empty) is found by
the sweep (services/ingestion_sweep.py), as a lost run message is.
"""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.db.retrieval_models import ChunkSet
from orchestrator.db.uow import UnitOfWork


def request(uow: UnitOfWork, ctx: Context, chunk_set: ChunkSet) -> None:
    chunk_set.enqueued_at = ctx.clock.now()
    chunk_set_id = chunk_set.id
    uow.after_commit(lambda: ctx.queue.enqueue_ingestion(chunk_set_id))
