"""Loading a tenant's vector store and recording its activity: what the store, store-file, batch and search
services share."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import VectorStore
from orchestrator.domain.errors import NotFound
from orchestrator.domain.retrieval import SECONDS_PER_DAY


def store_not_found(store_id: str) -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.")


def load(session: Session, tenant_id: str, store_id: str, *, for_update: bool = False) -> VectorStore:
    statement = select(VectorStore).where(VectorStore.id == store_id, VectorStore.tenant_id == tenant_id)
    store = session.scalar(statement.with_for_update() if for_update else statement)
    if store is None:
        raise store_not_found(store_id)
    return store


def touch(session: Session, stores: Iterable[VectorStore], now: int) -> None:
    """Record activity: `last_active_at` and the expiry anchored on it move, unless already expired."""
    for store in stores:
        if store.expires_at is not None and store.expires_at <= now:
            continue
        store.last_active_at = now
        store.expires_at = expiry(store.expires_after, now)


def expiry(expires_after: dict | None, anchor: int) -> int | None:
    if not expires_after:
        return None
    return anchor + int(expires_after["days"]) * SECONDS_PER_DAY
