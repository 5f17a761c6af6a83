"""File batches: many files into one store at once (`file_ids` or `files`, at most 10,000), retrieved,
cancelled and listed. A batch's `file_counts` are counted from its files' rows on every read; cancelling
turns its files still in progress to `cancelled`, so the SDK's poll (which loops while `in_progress > 0`)
ends."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import stores
from orchestrator.db.retrieval_models import VectorStoreFile, VectorStoreFileBatch
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, NotFound
from orchestrator.domain.ids import new_id
from orchestrator.domain.retrieval import STORE_FILE, BatchStatus, StoreFileStatus, batch_status, counts
from orchestrator.files import store_files, uploads, wire
from orchestrator.files.store_files import chunking_of
from orchestrator.schemas.vector_stores import CreateFileBatch


def create(ctx: Context, tenant_id: str, store_id: str, body: CreateFileBatch) -> dict:
    with ctx.uow() as uow:
        session, now = uow.session, ctx.timestamp()
        store = stores.load(session, tenant_id, store_id, for_update=True)
        wanted = _wanted(body)
        uploads.check_exist(session, tenant_id, [file_id for file_id, _c, _a in wanted], now)
        batch = VectorStoreFileBatch(
            id=new_id("vsfb"),
            tenant_id=tenant_id,
            vector_store_id=store.id,
            created_at=now,
            created_us=monotonic_us(),
        )
        session.add(batch)
        session.flush()
        if body.files is None:  # every file cut alike: attached together
            ids = [file_id for file_id, _c, _a in wanted]
            chunking = chunking_of(body.chunking_strategy)
            store_files.attach_many(
                uow, ctx, store, ids, chunking=chunking, attributes=body.attributes, batch_id=batch.id
            )
        for file_id, chunking, attributes in wanted if body.files is not None else ():
            store_files.attach(
                uow, ctx, store, file_id, chunking=chunking, attributes=attributes, batch_id=batch.id
            )
        stores.touch(session, [store], now)
        shown = view(session, batch)
        uow.commit()
        return shown


def _wanted(body: CreateFileBatch) -> list[tuple]:
    """(file id, chunking, attributes) per file; `files` entries carry their own, `file_ids` share the body's."""
    if body.files is not None:
        return [(f.file_id, chunking_of(f.chunking_strategy), f.attributes) for f in body.files]
    chunking = chunking_of(body.chunking_strategy)
    return [(file_id, chunking, body.attributes) for file_id in dict.fromkeys(body.file_ids or [])]


def get(ctx: Context, tenant_id: str, store_id: str, batch_id: str) -> dict:
    with ctx.uow() as uow:
        return view(uow.session, load(uow.session, tenant_id, store_id, batch_id))


def cancel(ctx: Context, tenant_id: str, store_id: str, batch_id: str) -> dict:
    with ctx.uow() as uow:
        session = uow.session
        batch = load(session, tenant_id, store_id, batch_id, for_update=True)
        status = batch_status(tally(session, batch.id), batch.cancelled_at is not None)
        if status in (BatchStatus.COMPLETED, BatchStatus.FAILED):
            raise InvalidRequest(f"Cannot cancel a vector store file batch with status '{status.value}'.")
        if batch.cancelled_at is None:
            batch.cancelled_at = ctx.timestamp()
            session.execute(
                update(VectorStoreFile)
                .where(
                    VectorStoreFile.batch_id == batch.id,
                    VectorStoreFile.status.in_(sorted(STORE_FILE.sources_of(StoreFileStatus.CANCELLED))),
                )
                .values(status=StoreFileStatus.CANCELLED)
                .execution_options(synchronize_session=False)
            )
            session.flush()
        shown = view(session, batch)
        uow.commit()
        return shown


def list_files(ctx: Context, tenant_id: str, store_id: str, batch_id: str, **query) -> dict:
    with ctx.uow() as uow:
        load(uow.session, tenant_id, store_id, batch_id)
    return store_files.list_(ctx, tenant_id, store_id, batch_id=batch_id, **query)


def load(
    session: Session, tenant_id: str, store_id: str, batch_id: str, *, for_update: bool = False
) -> VectorStoreFileBatch:
    statement = select(VectorStoreFileBatch).where(
        VectorStoreFileBatch.id == batch_id,
        VectorStoreFileBatch.vector_store_id == store_id,
        VectorStoreFileBatch.tenant_id == tenant_id,
    )
    batch = session.scalar(statement.with_for_update() if for_update else statement)
    if batch is None:
        stores.load(session, tenant_id, store_id)
        raise NotFound(f"No vector store file batch found with id '{batch_id}'.")
    return batch


def view(session: Session, batch: VectorStoreFileBatch) -> dict:
    return wire.batch(batch, tally(session, batch.id))


def tally(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(VectorStoreFile.status, func.count())
        .where(VectorStoreFile.batch_id == batch_id)
        .group_by(VectorStoreFile.status)
    ).all()
    return counts(dict(rows))
