"""Containers: where code_interpreter runs for the Responses API, and their files (db/container_models.py).

A container is a sandbox session (its id is the session's) with files: create, list, retrieve, delete,
and its files added (an upload, or a file of the files wing by id), listed, read and removed. Its files
are files of the files wing; those its code writes join it as `assistant` files. It expires
`expires_after.minutes` after its last activity (an execution, a file added): it then shows `expired`,
takes no more work (400), and the sweep deletes it with the files it made and ends its session.

For the engine (a response's code_interpreter):

    create_in(uow, ctx, tenant_id, ...) -> Container      one in the caller's transaction (`auto`)
    usable(session, tenant_id, container_id, now)          404 unknown, 400 expired
    still_usable(...) -> Container | None, put_files(uow, ctx, container, file_ids)
    input_files(ctx, tenant_id, container_id) -> [InputFile]   its files for the sandbox; marks activity
    record_written(uow, ctx, tenant_id, container_id, written) -> {name: container file id}
    named(session, container_id) -> {name under /mnt/data: container file id}   what a reply may cite
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import BinaryIO

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db.container_models import Container, ContainerFile, FileSource
from orchestrator.db.pages import each, page
from orchestrator.db.retrieval_models import File
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, NotFound
from orchestrator.domain.ids import new_id
from orchestrator.domain.retrieval import FilePurpose
from orchestrator.files import uploads
from orchestrator.sandbox.port import InputFile, safe_name
from orchestrator.schemas.containers import DEFAULT_MINUTES

log = logging.getLogger(__name__)

MOUNT = "/mnt/data/"
SECONDS_PER_MINUTE = 60


def container_not_found(container_id: str) -> NotFound:
    return NotFound(f"No container found with id '{container_id}'.", param="container_id")


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No container file found with id '{file_id}'.", param="file_id")


# --- containers ----------------------------------------------------------------------------------------


def create(
    ctx: Context,
    tenant_id: str,
    *,
    name: str,
    file_ids: list[str],
    minutes: int | None,
    memory_limit: str | None,
) -> dict:
    with ctx.uow() as uow:
        row = create_in(uow, ctx, tenant_id, name=name, file_ids=file_ids, minutes=minutes)
        row.memory_limit = memory_limit
        uow.commit()
        return view(row, ctx.timestamp())


def create_in(
    uow: UnitOfWork,
    ctx: Context,
    tenant_id: str,
    *,
    name: str,
    file_ids: list[str],
    minutes: int | None = None,
    memory_limit: str | None = None,
) -> Container:
    """A new container with the tenant's files `file_ids` in it (404 for one that is not theirs)."""
    session, now = uow.session, ctx.timestamp()
    minutes = minutes or DEFAULT_MINUTES
    row = Container(
        id=new_id("cntr"),
        tenant_id=tenant_id,
        name=name,
        created_at=now,
        created_us=monotonic_us(),
        last_active_at=now,
        expires_minutes=minutes,
        expires_at=now + minutes * SECONDS_PER_MINUTE,
        memory_limit=memory_limit,
    )
    session.add(row)
    session.flush()
    put_files(uow, ctx, row, file_ids)
    return row


def put_files(uow: UnitOfWork, ctx: Context, container: Container, file_ids: list[str]) -> None:
    """The tenant's files `file_ids` in the container, shared (404 for one that is not theirs)."""
    session, now = uow.session, ctx.timestamp()
    uploads.check_exist(session, container.tenant_id, file_ids, now)
    for file_id in dict.fromkeys(file_ids):
        found = uploads.load(session, container.tenant_id, file_id, now)
        _put(uow, ctx, container, found, FileSource.USER, owned=False)


def list_(ctx: Context, tenant_id: str, *, name: str | None, **query) -> dict:
    with ctx.uow() as uow:
        now = ctx.timestamp()
        scope = [Container.tenant_id == tenant_id]
        if name is not None:
            scope.append(Container.name == name)
        return page(uow.session, Container, scope, serialize=each(lambda row: view(row, now)), **query)


def get(ctx: Context, tenant_id: str, container_id: str) -> dict:
    with ctx.uow() as uow:
        return view(load(uow.session, tenant_id, container_id), ctx.timestamp())


def delete(ctx: Context, tenant_id: str, container_id: str) -> dict:
    """The container, the files it made, and its sandbox session (its variables and files)."""
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, container_id, for_update=True)
        remove(uow, ctx, row)
        uow.commit()
    close_session(ctx, container_id)
    return {"id": container_id, "object": "container.deleted", "deleted": True}


def remove(uow: UnitOfWork, ctx: Context, row: Container) -> None:
    session = uow.session
    owned = session.scalars(
        select(File)
        .join(ContainerFile, ContainerFile.file_id == File.id)
        .where(ContainerFile.container_id == row.id, ContainerFile.owned.is_(True))
    )
    for made in list(owned):
        uploads.remove(uow, ctx, made)
    session.execute(delete_rows(Container).where(Container.id == row.id))


def close_session(ctx: Context, container_id: str) -> None:
    """End the container's sandbox session; a sandbox that cannot be reached lets it expire on its own."""
    try:
        ctx.sandbox.close(container_id)
    except Exception as error:  # the container is gone either way; its session idles out
        log.warning("could not end the sandbox session of %s: %s", container_id, error)


def load(session: Session, tenant_id: str, container_id: str, *, for_update: bool = False) -> Container:
    """The tenant's container (expired or not) or 404; another tenant's is as unknown as a made-up id."""
    statement = select(Container).where(Container.id == container_id, Container.tenant_id == tenant_id)
    row = session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        raise container_not_found(container_id)
    return row


def usable(
    session: Session, tenant_id: str, container_id: str, now: int, *, for_update: bool = False
) -> Container:
    """A container that can take work: 404 if unknown, 400 if it expired."""
    row = load(session, tenant_id, container_id, for_update=for_update)
    if row.expires_at <= now:
        raise InvalidRequest(
            f"Container '{container_id}' has expired; create a new one.",
            param="container_id",
            code="container_expired",
        )
    return row


def still_usable(session: Session, tenant_id: str, container_id: str, now: int) -> Container | None:
    """The tenant's container if it exists and has not expired."""
    found = session.scalar(
        select(Container).where(Container.id == container_id, Container.tenant_id == tenant_id)
    )
    return found if found is not None and found.expires_at > now else None


def touch(row: Container, now: int) -> None:
    """Record activity: the expiry moves with it (an expired container stays expired)."""
    if row.expires_at > now:
        row.last_active_at = now
        row.expires_at = now + row.expires_minutes * SECONDS_PER_MINUTE


def view(row: Container, now: int) -> dict:
    return {
        "id": row.id,
        "object": "container",
        "name": row.name,
        "created_at": row.created_at,
        "status": "running" if row.expires_at > now else "expired",
        "expires_after": {"anchor": "last_active_at", "minutes": row.expires_minutes},
        "last_active_at": row.last_active_at,
        "memory_limit": row.memory_limit or "1g",
        "network_policy": {"type": "disabled"},
    }


def expire(ctx: Context, limit: int = 100) -> int:
    """Delete containers past their expiry (the sweep) and end their sessions; returns how many."""
    rows = uploads.sweep_expired(ctx, Container, remove, limit)
    for row in rows:
        close_session(ctx, row.id)
    return len(rows)


# --- its files -----------------------------------------------------------------------------------------


def add_upload(ctx: Context, tenant_id: str, container_id: str, *, source: BinaryIO, filename: str) -> dict:
    """An uploaded file, put in the container (the container owns it: it goes with it)."""
    with ctx.uow() as uow:
        row = _for_files(uow, ctx, tenant_id, container_id)
        made = uploads.store_file(
            uow, ctx, tenant_id, filename=filename, purpose=FilePurpose.USER_DATA, source=source
        )
        added = _put(uow, ctx, row, made, FileSource.USER, owned=True)
        uow.commit()
        return file_view(added)


def add_file(ctx: Context, tenant_id: str, container_id: str, file_id: str) -> dict:
    """A file of the tenant's, by id, put in the container (shared: deleting the file takes it out)."""
    with ctx.uow() as uow:
        row = _for_files(uow, ctx, tenant_id, container_id)
        found = uploads.load(uow.session, tenant_id, file_id, ctx.timestamp())
        added = _put(uow, ctx, row, found, FileSource.USER, owned=False)
        uow.commit()
        return file_view(added)


def _for_files(uow: UnitOfWork, ctx: Context, tenant_id: str, container_id: str) -> Container:
    """The container, locked: files put in it at once at the same path take turns."""
    row = usable(uow.session, tenant_id, container_id, ctx.timestamp(), for_update=True)
    touch(row, ctx.timestamp())
    return row


def list_files(ctx: Context, tenant_id: str, container_id: str, **query) -> dict:
    with ctx.uow() as uow:
        load(uow.session, tenant_id, container_id)
        scope = [ContainerFile.container_id == container_id]
        return page(uow.session, ContainerFile, scope, serialize=each(file_view), **query)


def get_file(ctx: Context, tenant_id: str, container_id: str, file_id: str) -> dict:
    with ctx.uow() as uow:
        return file_view(_load_file(uow.session, tenant_id, container_id, file_id))


def delete_file(ctx: Context, tenant_id: str, container_id: str, file_id: str) -> dict:
    with ctx.uow() as uow:
        row = _load_file(uow.session, tenant_id, container_id, file_id)
        _drop(uow, ctx, row)
        uow.commit()
    return {"id": file_id, "object": "container.file.deleted", "deleted": True}


def file_content(
    ctx: Context, tenant_id: str, container_id: str, file_id: str
) -> tuple[str, int, Iterator[bytes]]:
    """The file's name, size and bytes (read lazily)."""
    with ctx.uow() as uow:
        row = _load_file(uow.session, tenant_id, container_id, file_id)
        name, size, stored = _name(row.path), row.bytes, row.file_id
    return name, size, uploads.open_bytes(ctx, tenant_id, stored)


def file_view(row: ContainerFile) -> dict:
    return {
        "id": row.id,
        "object": "container.file",
        "bytes": row.bytes,
        "container_id": row.container_id,
        "created_at": row.created_at,
        "path": row.path,
        "source": row.source.value,
    }


def _load_file(session: Session, tenant_id: str, container_id: str, file_id: str) -> ContainerFile:
    load(session, tenant_id, container_id)
    row = session.scalar(
        select(ContainerFile).where(ContainerFile.id == file_id, ContainerFile.container_id == container_id)
    )
    if row is None:
        raise file_not_found(file_id)
    return row


def _put(
    uow: UnitOfWork, ctx: Context, container: Container, file: File, source: FileSource, *, owned: bool
) -> ContainerFile:
    """`file` at /mnt/data/<its name> in the container, in place of what was there."""
    path = MOUNT + safe_name(file.filename, file.id)
    return _place(uow, ctx, container, path, file, source, owned=owned)


def _place(
    uow: UnitOfWork,
    ctx: Context,
    container: Container,
    path: str,
    file: File,
    source: FileSource,
    *,
    owned: bool,
    keep_id: bool = False,
) -> ContainerFile:
    """`file` at `path` in the container. What was there goes; with `keep_id` its container file is
    updated to the new file instead (a file the code rewrote keeps its id)."""
    session = uow.session
    held = session.scalar(
        select(ContainerFile).where(ContainerFile.container_id == container.id, ContainerFile.path == path)
    )
    if held is not None and keep_id:
        replaced = session.get(File, held.file_id) if held.owned and held.file_id != file.id else None
        held.file_id, held.bytes, held.source, held.owned = file.id, file.bytes, source, owned
        session.flush()
        if replaced is not None:
            uploads.remove(uow, ctx, replaced)
        return held
    if held is not None:
        _drop(uow, ctx, held)
    row = ContainerFile(
        id=new_id("cfile"),
        container_id=container.id,
        tenant_id=container.tenant_id,
        file_id=file.id,
        path=path,
        bytes=file.bytes,
        source=source,
        owned=owned,
        created_at=ctx.timestamp(),
        created_us=monotonic_us(),
    )
    session.add(row)
    session.flush()
    return row


def _drop(uow: UnitOfWork, ctx: Context, row: ContainerFile) -> None:
    """The container file goes, and its file with it when the container made that file."""
    session = uow.session
    made = session.get(File, row.file_id) if row.owned else None
    session.delete(row)
    session.flush()
    if made is not None:
        uploads.remove(uow, ctx, made)


def _name(path: str) -> str:
    return path.removeprefix(MOUNT)


# --- for the engine -------------------------------------------------------------------------------------


def input_files(ctx: Context, tenant_id: str, container_id: str) -> list[InputFile]:
    """The container's files for its sandbox session (those directly in /mnt/data; the session keeps the
    rest), and its activity recorded. 404 if it is gone, 400 if it expired."""
    with ctx.uow() as uow:
        row = usable(uow.session, tenant_id, container_id, ctx.timestamp())
        touch(row, ctx.timestamp())
        held = list(
            uow.session.execute(
                select(ContainerFile.path, ContainerFile.file_id).where(
                    ContainerFile.container_id == container_id
                )
            )
        )
        uow.commit()
    found = []
    for path, file_id in held:
        name = _name(path)
        if "/" in name:
            continue
        try:
            found.append(InputFile(name, uploads.read_bytes(ctx, tenant_id, file_id)))
        except NotFound:  # deleted since: the code runs without it
            log.info("file %s of container %s is gone", file_id, container_id)
    return found


def record_written(
    uow: UnitOfWork, ctx: Context, tenant_id: str, container_id: str, written: dict[str, str]
) -> dict[str, str]:
    """Files the container's code wrote (`{name under /mnt/data: file id}`, files the engine stored) as
    its `assistant` files, each in place of what was at its path (keeping that container file's id);
    returns `{name: container file id}`. A container gone since keeps nothing."""
    session = uow.session
    container = session.scalar(
        select(Container)
        .where(Container.id == container_id, Container.tenant_id == tenant_id)
        .with_for_update()
    )
    if container is None:
        return {}
    ids = {}
    for name, file_id in written.items():
        made = session.get(File, file_id)
        if made is None:
            continue
        row = _place(uow, ctx, container, MOUNT + name, made, FileSource.ASSISTANT, owned=True, keep_id=True)
        ids[name] = row.id
    return ids


def named(session: Session, container_id: str) -> dict[str, str]:
    """`{name under /mnt/data: container file id}` of the container's files."""
    rows = session.execute(
        select(ContainerFile.path, ContainerFile.id).where(ContainerFile.container_id == container_id)
    )
    return {_name(path): file_id for path, file_id in rows}
