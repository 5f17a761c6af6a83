"""Assistants: create, read, modify, delete, list."""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, select

from orchestrator.context import Context
from orchestrator.db import models, rows
from orchestrator.db.pages import each, page
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import not_found
from orchestrator.domain.ids import new_id
from orchestrator.engine import wire
from orchestrator.files import tool_resources
from orchestrator.schemas.assistants import CreateAssistant, ModifyAssistant
from orchestrator.schemas.common import dump
from orchestrator.services import idempotency

_SIMPLE = ("model", "name", "description", "instructions", "temperature", "top_p", "reasoning_effort")


def create(ctx: Context, tenant_id: str, body: CreateAssistant) -> dict:
    with ctx.uow() as uow:
        row = models.Assistant(
            id=new_id("asst"),
            tenant_id=tenant_id,
            created_at=ctx.timestamp(),
            created_us=monotonic_us(),
            tools=[dump(tool) for tool in body.tools or []],
            tool_resources=tool_resources.resolve(uow, ctx, tenant_id, body.tool_resources),
            metadata_=body.metadata or {},
            response_format=_response_format(body),
            **{name: getattr(body, name) for name in _SIMPLE},
        )
        uow.session.add(row)
        uow.session.flush()  # the row as stored, for the answer a retry gets
        shown = wire.assistant(row)
        idempotency.answer(uow, shown)
        uow.commit()
        return shown


def get(ctx: Context, tenant_id: str, assistant_id: str) -> dict:
    with ctx.uow() as uow:
        return wire.assistant(read(uow.session, tenant_id, assistant_id))


def modify(ctx: Context, tenant_id: str, assistant_id: str, body: ModifyAssistant) -> dict:
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, assistant_id, for_update=True)
        for name in body.model_fields_set:
            value = getattr(body, name)
            if name == "tools":
                row.tools = [dump(tool) for tool in value or []]
            elif name == "tool_resources":
                row.tool_resources = tool_resources.resolve(uow, ctx, tenant_id, value)
            elif name == "metadata":
                row.metadata_ = value or {}
            elif name == "response_format":
                row.response_format = _response_format(body)
            elif name == "model" and value is None:
                continue
            else:
                setattr(row, name, value)
        uow.commit()
        return wire.assistant(row)


def delete(ctx: Context, tenant_id: str, assistant_id: str) -> dict:
    with ctx.uow() as uow:
        row = load(uow.session, tenant_id, assistant_id, for_update=True)
        uow.session.delete(row)
        uow.commit()
        return wire.deleted(assistant_id, "assistant")


def list_(ctx: Context, tenant_id: str, **query) -> dict:
    with ctx.uow() as uow:
        scope = [models.Assistant.tenant_id == tenant_id]
        return page(uow.session, models.Assistant, scope, serialize=each(wire.assistant), **query)


def load(session, tenant_id: str, assistant_id: str, *, for_update: bool = False) -> models.Assistant:
    statement = select(models.Assistant).where(
        models.Assistant.id == assistant_id, models.Assistant.tenant_id == tenant_id
    )
    row = session.scalar(statement.with_for_update() if for_update else statement)
    if row is None:
        raise not_found("assistant", assistant_id)
    return row


def read(session, tenant_id: str, assistant_id: str) -> models.Assistant:
    """The assistant as a read-only row (every run's create reads one: Core, a statement built once)."""
    row = session.execute(_reading(), {"id": assistant_id, "tenant": tenant_id}).one_or_none()
    if row is None:
        raise not_found("assistant", assistant_id)
    return row


@functools.cache
def _reading():
    c = models.Assistant.__table__.c
    return select(*rows.columns(models.Assistant)).where(
        c.id == bindparam("id"), c.tenant_id == bindparam("tenant")
    )


def _response_format(body: CreateAssistant):
    value = body.response_format
    return value if isinstance(value, str) or value is None else dump(value)
