"""Messages: create, read, modify (metadata), delete, list; and `add_messages`, which thread creation and
the run engine (`additional_messages`, create-thread-and-run) reuse."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models, runs, threads
from orchestrator.db import rows as db_rows
from orchestrator.db.pages import each, page
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import MessageStatus
from orchestrator.engine import wire
from orchestrator.files import tool_resources, uploads
from orchestrator.schemas.common import ContentPart, CreateMessage, ImageFilePart, TextPart, dump
from orchestrator.schemas.messages import ModifyMessage
from orchestrator.services import idempotency


def create(ctx: Context, tenant_id: str, thread_id: str, body: CreateMessage) -> dict:
    with ctx.uow() as uow:
        threads.lock(uow.session, tenant_id, thread_id)
        check_images(uow.session, tenant_id, [body], ctx.timestamp())
        active = runs.active_run_id(uow.session, thread_id)
        if active:
            raise InvalidRequest(f"Can't add messages to {thread_id} while a run {active} is active.")
        (row,) = add_messages(uow.session, tenant_id, thread_id, [body], ctx.timestamp())
        tool_resources.attach_files(uow, ctx, tenant_id, thread_id, [body])
        shown = wire.message(row)
        idempotency.answer(uow, shown)
        uow.commit()
        return shown


def get(ctx: Context, tenant_id: str, thread_id: str, message_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.message(load(uow.session, tenant_id, thread_id, message_id))


def modify(ctx: Context, tenant_id: str, thread_id: str, message_id: str, body: ModifyMessage) -> dict:
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, thread_id, message_id, for_update=True)
        if "metadata" in body.model_fields_set:
            row.metadata_ = body.metadata or {}
        uow.commit()
        return wire.message(row)


def delete(ctx: Context, tenant_id: str, thread_id: str, message_id: str) -> dict:
    with ctx.uow() as uow:
        result = uow.session.execute(
            delete_rows(models.Message).where(*_scope(tenant_id, thread_id), models.Message.id == message_id)
        )
        if result.rowcount != 1:
            threads.load(uow.session, tenant_id, thread_id)
            raise not_found("message", message_id)
        uow.commit()
        return wire.deleted(message_id, "thread.message")


def list_(ctx: Context, tenant_id: str, thread_id: str, *, run_id: str | None = None, **query) -> dict:
    with ctx.uow() as uow:
        threads.load(uow.session, tenant_id, thread_id)
        scope = _scope(tenant_id, thread_id)
        if run_id is not None:
            scope.append(models.Message.run_id == run_id)
        return page(uow.session, models.Message, scope, serialize=each(wire.message), **query)


def load(
    session: Session, tenant_id: str, thread_id: str, message_id: str, *, for_update: bool = False
) -> models.Message:
    """The message or 404; an unknown thread is reported as such before the message."""
    statement = select(models.Message).where(*_scope(tenant_id, thread_id), models.Message.id == message_id)
    row = session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        threads.load(session, tenant_id, thread_id)
        raise not_found("message", message_id)
    return row


def check_images(
    session: Session, tenant_id: str, messages: Sequence[CreateMessage], now: int, where: str | None = None
) -> None:
    """A 400 for the first `image_file` part naming a file that is not one of the tenant's live files.
    `where`: the messages' place in the body ("messages", "additional_messages", …); None for the body of
    one message."""
    named = [
        ((f"{where}[{m}]." if where else "") + f"content[{p}].image_file.file_id", part.image_file.file_id)
        for m, message in enumerate(messages)
        if not isinstance(message.content, str)
        for p, part in enumerate(message.content)
        if isinstance(part, ImageFilePart)
    ]
    if not named:
        return
    found = uploads.live(session, tenant_id, (file_id for _param, file_id in named), now)
    for param, file_id in named:
        if file_id not in found:
            raise InvalidRequest(
                f"Invalid '{param}': no file found with id '{file_id}'.", param=param, code="invalid_value"
            )


def add_messages(
    session: Session, tenant_id: str, thread_id: str, messages: Sequence[CreateMessage], now: int
) -> list[models.Message]:
    """Insert caller-written messages (status `completed`, no assistant or run) in the given order.
    The caller owns the transaction and has checked (and locked) the thread."""
    rows = new_messages(tenant_id, thread_id, messages, now)
    db_rows.add(session, *rows)
    return rows


def new_messages(
    tenant_id: str, thread_id: str, messages: Sequence[CreateMessage], now: int
) -> list[models.Message]:
    """Caller-written messages as rows to insert (`add_messages` inserts them)."""
    return [
        models.Message(
            id=new_id("msg"),
            tenant_id=tenant_id,
            thread_id=thread_id,
            created_at=now,
            created_us=monotonic_us(),
            role=message.role,
            status=MessageStatus.COMPLETED.value,
            content=content_blocks(message.content),
            assistant_id=None,
            run_id=None,
            turn=None,
            attachments=[dump(attachment) for attachment in message.attachments or []],
            metadata_=message.metadata or {},
            incomplete_details=None,
            completed_at=None,
            incomplete_at=None,
        )
        for message in messages
    ]


def content_blocks(content: str | Sequence[ContentPart]) -> list[dict]:
    """Request content (a string or parts) as stored message content blocks (contract §2.3, §3.3)."""
    if isinstance(content, str):
        return [text_block(content)]
    return [text_block(part.text) if isinstance(part, TextPart) else dump(part) for part in content]


def text_block(value: str) -> dict:
    return {"type": "text", "text": {"value": value, "annotations": []}}


def _scope(tenant_id: str, thread_id: str) -> list:
    return [models.Message.thread_id == thread_id, models.Message.tenant_id == tenant_id]
