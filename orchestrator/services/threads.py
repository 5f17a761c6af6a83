"""Threads: create (with initial messages), read, modify, delete; and the thread lock that message
creation and run creation share.

Adding a message and starting a run both take the thread row lock (`lock_thread`) before looking for an
active run, so the two cannot interleave: a message never slips in after a run was accepted, and the
partial unique index on runs stays the last word on "one active run per thread".
"""

from __future__ import annotations

from sqlalchemy import delete as delete_rows
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db import models
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import not_found
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import ACTIVE
from orchestrator.schemas.threads import CreateThread, ModifyThread
from orchestrator.services import messages, tool_resources, wire
from orchestrator.services.context import Context

_ACTIVE = sorted(status.value for status in ACTIVE)


def create(ctx: Context, tenant_id: str, body: CreateThread) -> dict:
    with ctx.uow() as uow:
        now = ctx.now()
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
            messages.add_messages(uow.session, tenant_id, row.id, body.messages, now)
            tool_resources.attach_files(uow, ctx, tenant_id, row.id, body.messages)
        uow.commit()
        return wire.thread(row)


def get(ctx: Context, tenant_id: str, thread_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.thread(load(uow.session, tenant_id, thread_id))


def modify(ctx: Context, tenant_id: str, thread_id: str, body: ModifyThread) -> dict:
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, thread_id, for_update=True)
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


def load(session: Session, tenant_id: str, thread_id: str, *, for_update: bool = False) -> models.Thread:
    """The tenant's thread or 404. `for_update` takes the row lock (FOR NO KEY UPDATE: it serializes
    writers of the thread without blocking inserts that merely reference it)."""
    statement = select(models.Thread).where(
        models.Thread.id == thread_id, models.Thread.tenant_id == tenant_id
    )
    if for_update:
        statement = statement.with_for_update(key_share=True)
    row = session.scalar(statement)
    if row is None:
        raise not_found("thread", thread_id)
    return row


def lock_thread(session: Session, tenant_id: str, thread_id: str) -> models.Thread:
    """Lock the thread row until the transaction ends (404 if it is not the tenant's). Take it before
    `active_run_id` whenever the answer decides a write."""
    return load(session, tenant_id, thread_id, for_update=True)


def active_run_id(session: Session, thread_id: str) -> str | None:
    """The id of the thread's queued / in_progress / requires_action / cancelling run, if any."""
    return session.scalar(
        select(models.Run.id)
        .where(models.Run.thread_id == thread_id, models.Run.status.in_(_ACTIVE))
        .limit(1)
    )
