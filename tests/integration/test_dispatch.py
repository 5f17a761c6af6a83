"""Handing runs to workers fairly: each tenant's window, max_active_runs, and the sweep that tops windows up."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

from sqlalchemy import select

from orchestrator.db import models
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.engine import advance, dispatch, sweeper
from orchestrator.providers.local import LocalModel
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.services import assistants, runs, tenants
from orchestrator.services.keys import create_key


def windowed(ctx, size: int):
    """A context of its own (its own caches) with a tenant window of `size`."""
    return dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"tenant_window": size}))


def new_tenant(ctx) -> tuple[str, str]:
    name = f"t_{uuid.uuid4().hex[:8]}"
    tenant_id, _key = create_key(ctx, name)
    return name, tenant_id


def start(ctx, tenant_id: str, count: int, text: str = "hello") -> list[str]:
    assistant = assistants.create(ctx, tenant_id, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": text}]}}
    )
    return [runs.create_thread_and_run(ctx, tenant_id, body).run["id"] for _ in range(count)]


def waiting(ctx, run_ids: list[str]) -> list[str]:
    with ctx.uow() as uow:
        rows = uow.session.execute(
            select(models.Run.id, models.Run.status, models.Run.enqueued_at).where(models.Run.id.in_(run_ids))
        )
        return sorted(run_id for run_id, status, at in rows if status is RunStatus.QUEUED and at is None)


def test_a_tenant_past_its_window_waits_in_order_and_each_finished_run_hands_out_the_next(ctx):
    ctx = windowed(ctx, 2)
    _name, flood = new_tenant(ctx)
    run_ids = start(ctx, flood, 5)
    assert ctx.queue.enqueued[-2:] == run_ids[:2]  # the window's worth went to the broker
    assert waiting(ctx, run_ids) == sorted(run_ids[2:])
    _other_name, other = new_tenant(ctx)
    (theirs,) = start(ctx, other, 1)
    assert ctx.queue.enqueued[-1] == theirs  # another tenant's run goes straight out
    advance.advance(
        ctx, run_ids[0]
    )  # one of the flood's runs completes: its place goes to the oldest waiting
    assert ctx.queue.enqueued[-1] == run_ids[2]
    assert waiting(ctx, run_ids) == sorted(run_ids[3:])


def test_a_run_waiting_for_tool_outputs_gives_its_place_to_the_next(ctx):
    ctx = windowed(ctx, 1)
    _name, tenant = new_tenant(ctx)
    tool = {"type": "function", "function": {"name": "lookup"}}
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local", tools=[tool]))
    body = CreateThreadAndRun.model_validate(
        {"assistant_id": assistant["id"], "thread": {"messages": [{"role": "user", "content": "lookup"}]}}
    )
    first, second = (runs.create_thread_and_run(ctx, tenant, body).run["id"] for _ in range(2))
    assert waiting(ctx, [first, second]) == [second]
    advance.advance(ctx, first)  # requires_action: it waits for the client, holding no place
    assert waiting(ctx, [first, second]) == [] and ctx.queue.enqueued[-1] == second


def test_claims_past_max_active_runs_go_back_to_waiting_and_start_as_places_free(ctx):
    name, tenant = new_tenant(ctx)
    tenants.set_limits(ctx, name, max_active_runs=1)
    ctx = windowed(ctx, 0)  # no window: every run is handed out, and the claim itself enforces the limit
    first, second = start(ctx, tenant, 2, text="slow words " * 40)
    worker = threading.Thread(target=advance.advance, args=(ctx, first, LocalModel(delay_ms=20)))
    worker.start()
    deadline = time.monotonic() + 10
    while dispatch_working(ctx, tenant) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    advance.advance(ctx, second)  # the tenant is at its limit: not started
    assert waiting(ctx, [second]) == [second]
    worker.join()
    assert ctx.queue.enqueued[-1] == second  # the first finished: the second was handed out
    advance.advance(ctx, second)
    with ctx.uow() as uow:
        assert uow.session.get(models.Run, second).status is RunStatus.COMPLETED


def dispatch_working(ctx, tenant_id: str) -> int:
    from orchestrator.db import runs as store

    with ctx.uow() as uow:
        return store.working(uow.session, tenant_id)


def test_the_sweep_hands_out_waiting_runs_once_a_window_has_room(ctx):
    small = windowed(ctx, 1)
    _name, tenant = new_tenant(small)
    run_ids = start(small, tenant, 3)
    assert len(waiting(small, run_ids)) == 2
    roomy = windowed(ctx, 3)  # the window was raised
    handed = dispatch.sweep(roomy)
    assert handed >= 2 and waiting(roomy, run_ids) == []
    assert set(run_ids[1:]) <= set(roomy.queue.enqueued)
    assert sweeper.sweep(roomy)["handed_out"] == 0
