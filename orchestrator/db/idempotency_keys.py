"""Idempotency keys' lifetime: how long a key's first response is kept, and the sweep's statement."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from orchestrator.db import models

TTL = 24 * 3600.0


def purge(session: Session, now: float) -> int:
    """Delete the keys older than TTL; returns how many."""
    return session.execute(
        delete(models.IdempotencyKey).where(models.IdempotencyKey.created_at < now - TTL)
    ).rowcount
