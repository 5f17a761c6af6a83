"""Files in vector stores: attach (the core of every way a file enters a store), read, list, update
attributes, detach, and the parsed content.

A store file points at the chunk set of its file cut its way (chunk size, overlap, the store's embedding
model). Attaching takes that chunk set's row lock, and ingestion takes it to finish, so a file attached
while its chunk set completes is either seen by the completion or sees it completed: never left behind.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import stores
from orchestrator.db.blobs import read_all
from orchestrator.db.pages import each, page
from orchestrator.db.retrieval_models import ChunkSet, VectorStore, VectorStoreFile
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import NotFound
from orchestrator.domain.ids import new_id
from orchestrator.domain.retrieval import (
    AUTO_CHUNKING,
    CHUNK_SET,
    STORE_FILE,
    STORE_FILE_FOLLOWS,
    STORE_FILE_KEPT,
    Chunking,
    ChunkSetStatus,
    IngestError,
    StoreFileStatus,
)
from orchestrator.files import ingest_requests, uploads, wire
from orchestrator.schemas.common import ChunkingStrategy
from orchestrator.schemas.vector_stores import CreateStoreFile, UpdateStoreFile


def chunking_of(strategy: ChunkingStrategy | None) -> Chunking:
    if strategy is None or strategy.static is None:
        return AUTO_CHUNKING
    return Chunking(strategy.static.max_chunk_size_tokens, strategy.static.chunk_overlap_tokens)


def store_file_not_found(store_id: str, file_id: str) -> NotFound:
    return NotFound(f"No file found with id '{file_id}' in vector store '{store_id}'.")


def attach(
    uow: UnitOfWork,
    ctx: Context,
    store: VectorStore,
    file_id: str,
    *,
    chunking: Chunking | None = None,
    attributes: dict | None = None,
    batch_id: str | None = None,
) -> VectorStoreFile:
    """Put a (checked) file into the store; ingestion is enqueued after commit when it is needed. A file
    already in the store keeps its row (attributes replaced when given), unless it failed or was
    cancelled: then it is attached anew."""
    session, now = uow.session, ctx.timestamp()
    chunking = chunking or AUTO_CHUNKING
    chunk_set = chunk_set_for(session, store.tenant_id, file_id, chunking, store.embedding_model, now)
    row = session.get(VectorStoreFile, (store.id, file_id), with_for_update=True)
    if row is None:
        row = _new_row(session, store, file_id, now)
    elif row.status in STORE_FILE_KEPT:
        chunk_set = None  # already there (or on its way): only attributes and batch may change
    if attributes is not None:
        row.attributes = attributes
    if batch_id is not None:
        row.batch_id = batch_id
    if chunk_set is not None:
        _cut_by(uow, ctx, row, chunk_set, chunking)
    session.flush()
    return row


def _cut_by(
    uow: UnitOfWork, ctx: Context, row: VectorStoreFile, chunk_set: ChunkSet, chunking: Chunking
) -> None:
    """The store file takes this chunk set (and its status); its ingestion is asked for after commit."""
    row.chunk_set_id = chunk_set.id
    row.chunking_strategy = chunking.wire()
    follow(row, chunk_set)
    if chunk_set.status == ChunkSetStatus.IN_PROGRESS:
        ingest_requests.request(uow, ctx, chunk_set)


def _new_row(session: Session, store: VectorStore, file_id: str, now: int) -> VectorStoreFile:
    row = VectorStoreFile(
        vector_store_id=store.id,
        id=file_id,
        tenant_id=store.tenant_id,
        created_at=now,
        created_us=monotonic_us(),
        attributes={},
        usage_bytes=0,
    )
    session.add(row)
    return row


def attach_many(
    uow: UnitOfWork,
    ctx: Context,
    store: VectorStore,
    file_ids: list[str],
    *,
    chunking: Chunking,
    attributes: dict | None,
    batch_id: str,
) -> None:
    """`attach` for many (checked, distinct) files cut alike, in a few statements for all of them rather
    than a few for each: their chunk sets made and locked together, their store files read, added and
    changed together. A file batch of 10,000 files is one request."""
    session, now = uow.session, ctx.timestamp()
    for start in range(0, len(file_ids), ATTACH_SLICE):
        part = file_ids[start : start + ATTACH_SLICE]
        sets = chunk_sets_for_many(session, store.tenant_id, part, chunking, store.embedding_model, now)
        found = session.scalars(
            select(VectorStoreFile)
            .where(VectorStoreFile.vector_store_id == store.id, VectorStoreFile.id.in_(part))
            .order_by(VectorStoreFile.id)
            .with_for_update()
        )
        rows = {row.id: row for row in found}
        for file_id in part:
            chunk_set, row = sets[file_id], rows.get(file_id)
            if row is None:
                row = _new_row(session, store, file_id, now)
            elif row.status in STORE_FILE_KEPT:
                chunk_set = None
            if attributes is not None:
                row.attributes = attributes
            row.batch_id = batch_id
            if chunk_set is not None:
                _cut_by(uow, ctx, row, chunk_set, chunking)
        session.flush()


ATTACH_SLICE = 1000  # files per statement in attach_many


def chunk_sets_for_many(
    session: Session, tenant_id: str, file_ids: list[str], chunking: Chunking, model: str, now: int
) -> dict[str, ChunkSet]:
    """`chunk_set_for` for many files: the missing ones inserted in one statement, then all read and
    row-locked in one (in id order, as every taker of several locks them)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values = [_missing_values(tenant_id, file_id, chunking, model, now) for file_id in file_ids]
    session.execute(insert(ChunkSet).values(values).on_conflict_do_nothing())
    rows = session.scalars(
        select(ChunkSet)
        .where(
            ChunkSet.file_id.in_(file_ids),
            ChunkSet.max_tokens == chunking.max_tokens,
            ChunkSet.overlap == chunking.overlap,
            ChunkSet.embedding_model == model,
        )
        .order_by(ChunkSet.id)
        .with_for_update()
    )
    found = {}
    for row in rows:
        _retry_passing_failure(row)
        found[row.file_id] = row
    return found


def _retry_passing_failure(row: ChunkSet) -> None:
    """A chunk set that failed for a passing reason (server_error) is given another go."""
    retried = CHUNK_SET.allows(row.status, ChunkSetStatus.IN_PROGRESS)
    if retried and (row.last_error or {}).get("code") == IngestError.SERVER_ERROR:
        row.status, row.last_error, row.attempts = ChunkSetStatus.IN_PROGRESS, None, 0


def follow(row: VectorStoreFile, chunk_set: ChunkSet) -> None:
    """The store file's status, error and usage as its chunk set's."""
    status = STORE_FILE_FOLLOWS[chunk_set.status]
    row.status = status
    row.last_error = chunk_set.last_error
    row.usage_bytes = chunk_set.usage_bytes if status is StoreFileStatus.COMPLETED else 0


def chunk_set_for(
    session: Session, tenant_id: str, file_id: str, chunking: Chunking, model: str, now: int
) -> ChunkSet:
    """The file's chunk set for this cut, created when missing, row-locked until the transaction ends.
    One that failed for a passing reason (server_error) is given another go."""
    cut = (
        ChunkSet.file_id == file_id,
        ChunkSet.max_tokens == chunking.max_tokens,
        ChunkSet.overlap == chunking.overlap,
        ChunkSet.embedding_model == model,
    )
    row = session.scalar(select(ChunkSet).where(*cut).with_for_update())
    if row is None:
        session.execute(_insert_missing(session, tenant_id, file_id, chunking, model, now))
        row = session.scalar(select(ChunkSet).where(*cut).with_for_update())
    _retry_passing_failure(row)
    return row


def _insert_missing(session: Session, tenant_id: str, file_id: str, chunking: Chunking, model: str, now: int):
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values = _missing_values(tenant_id, file_id, chunking, model, now)
    # Two transactions may ask for the same cut at once: one row wins, the other is read back.
    return insert(ChunkSet).values(**values).on_conflict_do_nothing()


def _missing_values(tenant_id: str, file_id: str, chunking: Chunking, model: str, now: int) -> dict:
    return {
        "id": new_id("cs"),
        "tenant_id": tenant_id,
        "file_id": file_id,
        "max_tokens": chunking.max_tokens,
        "overlap": chunking.overlap,
        "embedding_model": model,
        "created_at": now,
        "status": ChunkSetStatus.IN_PROGRESS,
        "attempts": 0,
        "chunk_count": 0,
        "usage_bytes": 0,
    }


def create(ctx: Context, tenant_id: str, store_id: str, body: CreateStoreFile) -> dict:
    with ctx.uow() as uow:
        store = stores.load(uow.session, tenant_id, store_id, for_update=True)
        uploads.check_exist(uow.session, tenant_id, [body.file_id], ctx.timestamp())
        row = attach(
            uow,
            ctx,
            store,
            body.file_id,
            chunking=chunking_of(body.chunking_strategy),
            attributes=body.attributes,
        )
        stores.touch(uow.session, [store], ctx.timestamp())
        uow.commit()
        return wire.store_file(row)


def get(ctx: Context, tenant_id: str, store_id: str, file_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.store_file(load(uow.session, tenant_id, store_id, file_id))


def update_attributes(
    ctx: Context, tenant_id: str, store_id: str, file_id: str, body: UpdateStoreFile
) -> dict:
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, store_id, file_id, for_update=True)
        row.attributes = body.attributes or {}
        uow.commit()
        return wire.store_file(row)


def delete(ctx: Context, tenant_id: str, store_id: str, file_id: str) -> dict:
    """Take the file out of the store (the file stays; so do its chunks, for other stores)."""
    with ctx.uow() as uow:
        uow.session.delete(load(uow.session, tenant_id, store_id, file_id, for_update=True))
        uow.commit()
        return wire.deleted(file_id, "vector_store.file.deleted")


def list_(
    ctx: Context, tenant_id: str, store_id: str, *, filter: str | None, batch_id: str | None = None, **query
) -> dict:
    with ctx.uow() as uow:
        stores.load(uow.session, tenant_id, store_id)
        scope = [VectorStoreFile.vector_store_id == store_id, VectorStoreFile.tenant_id == tenant_id]
        if batch_id is not None:
            scope.append(VectorStoreFile.batch_id == batch_id)
        if filter is not None:
            scope.append(VectorStoreFile.status == filter)
        return page(uow.session, VectorStoreFile, scope, serialize=each(wire.store_file), **query)


def content(ctx: Context, tenant_id: str, store_id: str, file_id: str) -> dict:
    """The text parsed from the file, as the SDK's page of `{type: "text", text}` items."""
    with ctx.uow() as uow:
        load(uow.session, tenant_id, store_id, file_id)
    text = read_all(ctx.blobs, uploads.text_key(file_id)).decode("utf-8")
    data = [{"type": "text", "text": text}] if text else []
    return {"object": "vector_store.file_content.page", "data": data, "has_more": False, "next_page": None}


def load(
    session: Session, tenant_id: str, store_id: str, file_id: str, *, for_update: bool = False
) -> VectorStoreFile:
    statement = select(VectorStoreFile).where(
        VectorStoreFile.vector_store_id == store_id,
        VectorStoreFile.id == file_id,
        VectorStoreFile.tenant_id == tenant_id,
    )
    row = session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        stores.load(session, tenant_id, store_id)
        raise store_file_not_found(store_id, file_id)
    return row


def settle(session: Session, chunk_set) -> int:
    """Bring every in-progress store file of a finished chunk set (a ChunkSet, or its row) to its outcome,
    as the lifecycle table allows; returns how many."""
    status = STORE_FILE_FOLLOWS[chunk_set.status]
    completed = status is StoreFileStatus.COMPLETED
    result = session.execute(
        update(VectorStoreFile)
        .where(
            VectorStoreFile.chunk_set_id == chunk_set.id,
            VectorStoreFile.status.in_(sorted(STORE_FILE.sources_of(status))),
        )
        .values(
            status=status,
            usage_bytes=chunk_set.usage_bytes if completed else 0,
            last_error=None if completed else chunk_set.last_error,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
