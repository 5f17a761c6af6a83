"""Loading a tenant's vector store, recording its activity, and taking a deleted one out of the
`tool_resources` that name it: what the store, store-file, batch and search services share."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from orchestrator.db.models import Assistant, Thread
from orchestrator.db.retrieval_models import VectorStore
from orchestrator.domain.errors import NotFound
from orchestrator.domain.retrieval import SECONDS_PER_DAY


def store_not_found(store_id: str) -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.")


def load(
    session: Session, tenant_id: str, store_id: str, *, for_update: bool = False, for_key_share: bool = False
) -> VectorStore:
    """`for_key_share`: for a transaction about to name the store in `tool_resources`, whose commit a
    deletion (which takes the row FOR UPDATE) then waits for, so that it finds the new reference too. It
    does not conflict with the updates of activity."""
    statement = select(VectorStore).where(VectorStore.id == store_id, VectorStore.tenant_id == tenant_id)
    if for_update:
        statement = statement.with_for_update()
    elif for_key_share:
        statement = statement.with_for_update(read=True, key_share=True)
    store = session.scalar(statement)
    if store is None:
        raise store_not_found(store_id)
    return store


def unlink(session: Session, tenant_id: str, store_id: str) -> None:
    """Take a store being deleted out of every assistant's and thread's `file_search.vector_store_ids`, in
    the deleting transaction (which holds the store FOR UPDATE): a run never searches a deleted store."""
    for model in (Assistant, Thread):
        named = session.scalars(
            select(model)
            .where(
                model.tenant_id == tenant_id,
                cast(model.tool_resources, Text).contains(f'"{store_id}"', autoescape=True),
            )
            .with_for_update()
        )
        for row in named:
            row.tool_resources = _without(row.tool_resources, store_id)


def _without(resources: dict, store_id: str) -> dict:
    search = dict(resources.get("file_search") or {})
    search["vector_store_ids"] = [i for i in search.get("vector_store_ids") or [] if i != store_id]
    return {**resources, "file_search": search}


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
