"""Threads: create (with initial messages), read, modify, delete."""

from __future__ import annotations

from sqlalchemy import delete as delete_rows

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db import threads as db_threads
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import not_found
from orchestrator.domain.ids import new_id
from orchestrator.engine import wire
from orchestrator.files import tool_resources
from orchestrator.schemas.threads import CreateThread, ModifyThread
from orchestrator.services import idempotency, messages


def create(ctx: Context, tenant_id: str, body: CreateThread) -> dict:
    with ctx.uow() as uow:
        now = ctx.timestamp()
        row = models.Thread(
            id=new_id("thread"),
            tenant_id=tenant_id,
            created_at=now,
            created_us=monotonic_us(),
            metadata_=body.metadata or {},
            tool_resources=tool_resources.resolve(uow, ctx, tenant_id, body.tool_resources),
        )
        uow.session.add(row)
        uow.session.flush()
        if body.messages:
            messages.check_images(uow.session, tenant_id, body.messages, now, "messages")
            messages.add_messages(uow.session, tenant_id, row.id, body.messages, now)
            tool_resources.attach_files(uow, ctx, tenant_id, row.id, body.messages)
        shown = wire.thread(row)
        idempotency.answer(uow, shown)
        uow.commit()
        return shown


def get(ctx: Context, tenant_id: str, thread_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.thread(db_threads.load(uow.session, tenant_id, thread_id))


def modify(ctx: Context, tenant_id: str, thread_id: str, body: ModifyThread) -> dict:
    with ctx.uow() as uow:
        row = db_threads.load(uow.session, tenant_id, thread_id, for_update=True)
        if "metadata" in body.model_fields_set:
            row.metadata_ = body.metadata or {}
        if "tool_resources" in body.model_fields_set:
            row.tool_resources = tool_resources.resolve(uow, ctx, tenant_id, body.tool_resources)
        uow.commit()
        return wire.thread(row)


def delete(ctx: Context, tenant_id: str, thread_id: str) -> dict:
    """Messages, runs, steps and run events go with the thread (ON DELETE CASCADE)."""
    with ctx.uow() as uow:
        result = uow.session.execute(
            delete_rows(models.Thread).where(
                models.Thread.id == thread_id, models.Thread.tenant_id == tenant_id
            )
        )
        if result.rowcount != 1:
            raise not_found("thread", thread_id)
        uow.commit()
        return wire.deleted(thread_id, "thread")
