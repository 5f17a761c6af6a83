"""Vector stores: create, read, modify, delete, list; their counts; and their activity clock.

`file_counts` and `usage_bytes` are computed from the store's file rows on every read, so they cannot
drift from what the rows say (the SDK's batch poll loops while `in_progress > 0`). A store's `status` is
derived too: `expired` once past `expires_at`, else `in_progress` while a file is, else `completed`.
Activity (a file added, a search, a run using it) moves `last_active_at`, and with it `expires_at`, except
on a store already expired: expiry is final.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db.pages import page
from orchestrator.db.retrieval_models import VectorStore, VectorStoreFile
from orchestrator.db.stores import expiry, load, unlink
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.ids import new_id
from orchestrator.domain.retrieval import Chunking, StoreFileStatus, counts
from orchestrator.files import store_files, uploads, wire
from orchestrator.files.store_files import chunking_of
from orchestrator.schemas.common import dump
from orchestrator.schemas.vector_stores import CreateVectorStore, ModifyVectorStore


def create(ctx: Context, tenant_id: str, body: CreateVectorStore) -> dict:
    with ctx.uow() as uow:
        store = create_in(
            uow,
            ctx,
            tenant_id,
            name=body.name,
            description=body.description,
            metadata=body.metadata,
            expires_after=dump(body.expires_after),
            file_ids=body.file_ids or [],
            chunking=chunking_of(body.chunking_strategy),
        )
        shown = view(uow.session, store, ctx.timestamp())
        uow.commit()
        return shown


def create_in(
    uow: UnitOfWork,
    ctx: Context,
    tenant_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    metadata: dict | None = None,
    expires_after: dict | None = None,
    file_ids: Iterable[str] = (),
    chunking: Chunking | None = None,
) -> VectorStore:
    """A new store in the caller's transaction, with `file_ids` added (ingested after commit). Used by the
    endpoint, the `tool_resources.file_search.vector_stores` helper and message attachments."""
    now = ctx.timestamp()
    file_ids = list(dict.fromkeys(file_ids))
    uploads.check_exist(uow.session, tenant_id, file_ids, now)
    store = VectorStore(
        id=new_id("vs"),
        tenant_id=tenant_id,
        created_at=now,
        created_us=monotonic_us(),
        name=name,
        description=description,
        metadata_=metadata or {},
        expires_after=expires_after,
        expires_at=expiry(expires_after, now),
        last_active_at=now,
        embedding_model=ctx.settings.embedding_model or "",
    )
    uow.session.add(store)
    uow.session.flush()
    for file_id in file_ids:
        store_files.attach(uow, ctx, store, file_id, chunking=chunking)
    return store


def get(ctx: Context, tenant_id: str, store_id: str) -> dict:
    with ctx.uow() as uow:
        return view(uow.session, load(uow.session, tenant_id, store_id), ctx.timestamp())


def modify(ctx: Context, tenant_id: str, store_id: str, body: ModifyVectorStore) -> dict:
    with ctx.uow() as uow:
        store = load(uow.session, tenant_id, store_id, for_update=True)
        if "name" in body.model_fields_set:
            store.name = body.name
        if "metadata" in body.model_fields_set:
            store.metadata_ = body.metadata or {}
        if "expires_after" in body.model_fields_set:
            store.expires_after = dump(body.expires_after)
            store.expires_at = expiry(store.expires_after, store.last_active_at)
        uow.session.flush()
        shown = view(uow.session, store, ctx.timestamp())
        uow.commit()
        return shown


def delete(ctx: Context, tenant_id: str, store_id: str) -> dict:
    """The store, its file rows and batches (the files themselves, and their chunks, stay), and its place
    in every assistant's and thread's `tool_resources`."""
    with ctx.uow() as uow:
        store = load(uow.session, tenant_id, store_id, for_update=True)
        unlink(uow.session, tenant_id, store_id)
        uow.session.delete(store)
        uow.commit()
        return wire.deleted(store_id, "vector_store.deleted")


def list_(ctx: Context, tenant_id: str, **query) -> dict:
    with ctx.uow() as uow:
        now = ctx.timestamp()
        scope = [VectorStore.tenant_id == tenant_id]
        return page(
            uow.session, VectorStore, scope, serialize=lambda rows: views(uow.session, rows, now), **query
        )


def check_exist(session: Session, tenant_id: str, store_ids: list[str]) -> None:
    """404 for the first id that is not one of the tenant's stores; the others stay until this transaction
    ends (a deletion waits for it, then takes the store out of what it wrote: db/stores.unlink)."""
    for store_id in store_ids:
        load(session, tenant_id, store_id, for_key_share=True)


def view(session: Session, store: VectorStore, now: int) -> dict:
    return views(session, [store], now)[0]


def views(session: Session, stores: list[VectorStore], now: int) -> list[dict]:
    """The stores' wire objects, their files counted in one statement (a page of 100 stores made 101)."""
    counted = tallies(session, [store.id for store in stores])
    return [wire.vector_store(store, *counted[store.id], now) for store in stores]


def tally(session: Session, store_id: str) -> tuple[dict[str, int], int]:
    """`file_counts` and `usage_bytes` from the store's file rows."""
    return tallies(session, [store_id])[store_id]


def tallies(session: Session, store_ids: list[str]) -> dict[str, tuple[dict[str, int], int]]:
    """`tally` of each of the stores (none: no files)."""
    if not store_ids:
        return {}
    rows = session.execute(
        select(
            VectorStoreFile.vector_store_id,
            VectorStoreFile.status,
            func.count(),
            func.coalesce(func.sum(VectorStoreFile.usage_bytes), 0),
        )
        .where(VectorStoreFile.vector_store_id.in_(store_ids))
        .group_by(VectorStoreFile.vector_store_id, VectorStoreFile.status)
    ).all()
    statuses: dict[str, dict[str, int]] = {store_id: {} for store_id in store_ids}
    usage = dict.fromkeys(store_ids, 0)
    for store_id, status, count, used in rows:
        statuses[store_id][status] = count
        if status == StoreFileStatus.COMPLETED:
            usage[store_id] += int(used)
    return {store_id: (counts(statuses[store_id]), usage[store_id]) for store_id in store_ids}
