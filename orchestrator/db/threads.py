"""Loading and locking a tenant's thread: what messages, runs and threads share.

Adding a message and starting a run both take the thread row lock (`lock`) before looking for an active
run, so the two cannot interleave: a message never slips in after a run was accepted, and the partial
unique index on runs stays the last word on "one active run per thread".
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.domain.errors import not_found


def load(session: Session, tenant_id: str, thread_id: str, *, for_update: bool = False) -> models.Thread:
    """The tenant's thread or 404. `for_update` takes the row lock (FOR NO KEY UPDATE: it serializes
    writers of the thread without blocking inserts that merely reference it)."""
    statement = select(models.Thread).where(
        models.Thread.id == thread_id, models.Thread.tenant_id == tenant_id
    )
    if for_update:
        statement = statement.with_for_update(key_share=True)
    row = session.scalar(statement)
    if row is None:
        raise not_found("thread", thread_id)
    return row


def lock(session: Session, tenant_id: str, thread_id: str) -> models.Thread:
    """Lock the thread row until the transaction ends (404 if it is not the tenant's). Take it before
    looking for the thread's active run whenever the answer decides a write."""
    return load(session, tenant_id, thread_id, for_update=True)
