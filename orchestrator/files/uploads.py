"""Files: upload, read, list, delete, and their bytes; plus what the run engine needs of them.

For the engine (code_interpreter, file_search citations):

    create_output_file(ctx, tenant_id, filename, source) -> dict      an `assistants_output` file
    store_file(uow, ctx, tenant_id, ...) -> File                      the same inside the caller's transaction
    open_bytes(ctx, tenant_id, file_id) -> Iterator[bytes]            stream a file's bytes (404 if gone)
    read_bytes(ctx, tenant_id, file_id) -> bytes                      the whole file (for the sandbox)

An expired file (`expires_after`) is gone for every read at once and deleted by the sweep.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from sqlalchemy import delete as delete_rows
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db.pages import each, page
from orchestrator.db.retrieval_models import File
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import NotFound
from orchestrator.domain.ids import new_id
from orchestrator.domain.retrieval import FilePurpose, FileStatus
from orchestrator.files import wire

log = logging.getLogger(__name__)


def bytes_key(file_id: str) -> str:
    return f"file/{file_id}"


def text_key(file_id: str) -> str:
    """Where the text extracted from a file is kept, so it is parsed once."""
    return f"text/{file_id}"


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="file_id")


def upload(
    ctx: Context,
    tenant_id: str,
    *,
    source: BinaryIO,
    filename: str,
    purpose: str,
    expires_after_seconds: int | None = None,
) -> dict:
    with ctx.uow() as uow:
        now = ctx.timestamp()
        expires_at = now + expires_after_seconds if expires_after_seconds else None
        row = store_file(uow, ctx, tenant_id, filename=filename, purpose=purpose, source=source)
        row.expires_at = expires_at
        uow.commit()
        return wire.file(row)


def create_output_file(ctx: Context, tenant_id: str, filename: str, source: BinaryIO | bytes) -> dict:
    """A file the run engine made (code_interpreter output): purpose `assistants_output`."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with ctx.uow() as uow:
        row = store_file(
            uow, ctx, tenant_id, filename=filename, purpose=FilePurpose.ASSISTANTS_OUTPUT, source=stream
        )
        uow.commit()
        return wire.file(row)


def store_file(
    uow: UnitOfWork, ctx: Context, tenant_id: str, *, filename: str, purpose: str, source: BinaryIO
) -> File:
    """Store the bytes and add the file row in the caller's unit of work (the bytes go first: a directory
    store writes them before the transaction takes any lock)."""
    file_id = new_id("file", "-")
    info = ctx.blobs.put(uow, tenant_id, bytes_key(file_id), source)
    row = File(
        id=file_id,
        tenant_id=tenant_id,
        created_at=ctx.timestamp(),
        created_us=monotonic_us(),
        filename=filename,
        purpose=str(purpose),
        bytes=info.size,
        sha256=info.sha256,
        status=FileStatus.PROCESSED.value,
        expires_at=None,
        text_bytes=None,
        parse_error=None,
    )
    uow.session.add(row)
    uow.session.flush()
    return row


def get(ctx: Context, tenant_id: str, file_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.file(load(uow.session, tenant_id, file_id, ctx.timestamp()))


def list_(ctx: Context, tenant_id: str, *, purpose: str | None, **query) -> dict:
    with ctx.uow() as uow:
        scope = [File.tenant_id == tenant_id, _live(ctx.timestamp())]
        if purpose is not None:
            scope.append(File.purpose == purpose)
        return page(uow.session, File, scope, serialize=each(wire.file), before=None, **query)


def delete(ctx: Context, tenant_id: str, file_id: str) -> dict:
    """The file, its bytes, its extracted text, its chunks, and its place in every vector store."""
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, file_id, ctx.timestamp(), for_update=True)
        remove(uow, ctx, row)
        uow.commit()
        return {"id": file_id, "object": "file", "deleted": True}


def remove(uow: UnitOfWork, ctx: Context, row: File) -> None:
    """Delete a loaded file row and everything hanging off it (store files and chunks cascade)."""
    blobs = ctx.blobs
    blobs.delete(uow, bytes_key(row.id))
    blobs.delete(uow, text_key(row.id))
    uow.session.execute(delete_rows(File).where(File.id == row.id))


def content(ctx: Context, tenant_id: str, file_id: str) -> tuple[dict, Iterator[bytes]]:
    """The file object and an iterator over its bytes (read lazily, slice by slice)."""
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, file_id, ctx.timestamp())
    return wire.file(row), ctx.blobs.slices(bytes_key(file_id))


def open_bytes(ctx: Context, tenant_id: str, file_id: str) -> Iterator[bytes]:
    return content(ctx, tenant_id, file_id)[1]


def read_bytes(ctx: Context, tenant_id: str, file_id: str) -> bytes:
    return b"".join(open_bytes(ctx, tenant_id, file_id))


def load(session: Session, tenant_id: str, file_id: str, now: int, *, for_update: bool = False) -> File:
    """The tenant's live file or 404 (an expired one is gone)."""
    statement = select(File).where(File.id == file_id, File.tenant_id == tenant_id, _live(now))
    row = session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        raise file_not_found(file_id)
    return row


def check_exist(session: Session, tenant_id: str, file_ids: list[str], now: int) -> None:
    """404 for the first id that is not one of the tenant's live files."""
    found = live(session, tenant_id, file_ids, now)
    for file_id in file_ids:
        if file_id not in found:
            raise file_not_found(file_id)


def live(session: Session, tenant_id: str, file_ids: Iterable[str], now: int) -> set[str]:
    """Which of `file_ids` are the tenant's live files."""
    wanted = set(file_ids)
    if not wanted:
        return set()
    statement = select(File.id).where(File.id.in_(wanted), File.tenant_id == tenant_id, _live(now))
    return set(session.scalars(statement))


def expire(ctx: Context, limit: int = 100) -> int:
    """Delete files past their `expires_at` (the sweep); returns how many."""
    return len(sweep_expired(ctx, File, remove, limit))


def sweep_expired(ctx: Context, model: Any, removing: Callable[[UnitOfWork, Context, Any], None], limit: int):
    """Rows of `model` (files, containers) past their `expires_at`, each removed by `removing` in one
    transaction; rows another sweep holds are skipped. Returns the rows removed."""
    with ctx.uow() as uow:
        rows = list(
            uow.session.scalars(
                select(model)
                .where(model.expires_at <= ctx.timestamp())
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        for row in rows:
            removing(uow, ctx, row)
        uow.commit()
    return rows


def _live(now: int):
    return or_(File.expires_at.is_(None), File.expires_at > now)
