"""Runs as the API sees them: create, read, modify, cancel, submit tool outputs, steps.

Every state change is a guarded transition with its events in one unit of work; the enqueue and the
publish happen after commit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models, rows, runs, steps, threads
from orchestrator.db.pages import each, page
from orchestrator.db.runs import ANYONE, UNLEASED
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import InvalidRequest, not_found
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import CANCELLABLE, Api, RunEvent, RunStatus, StepStatus
from orchestrator.engine import dispatch, lifecycle, wire
from orchestrator.files import tool_resources
from orchestrator.schemas.runs import CreateRun, CreateThreadAndRun, RunOptions, SubmitToolOutputs, as_json
from orchestrator.services import assistants, idempotency, messages

DEFAULT_TRUNCATION = {"type": "auto", "last_messages": None}


# Called with the run's id just before the change commits: a stream of the change subscribes there, so every
# later event reaches it live (api/sse.py).
Watch = Callable[[str], None]


@dataclass(frozen=True)
class Accepted:
    """A run the API changed, the event cursor a stream of that change starts after, and the change's own
    events (numbered after the cursor, committed), which that stream sends first."""

    run: dict
    cursor: int
    events: tuple[dict, ...] = ()


def create(
    ctx: Context,
    tenant_id: str,
    thread_id: str,
    body: CreateRun,
    *,
    search_content: bool = False,
    watch: Watch | None = None,
) -> Accepted:
    """`search_content`: the run's file_search steps show their results' content (`include[]`)."""
    with ctx.uow() as uow:
        session = uow.session
        threads.lock(session, tenant_id, thread_id)
        assistant = assistants.read(session, tenant_id, body.assistant_id)
        if body.additional_messages:
            extra, now = body.additional_messages, ctx.timestamp()
            messages.check_images(session, tenant_id, extra, now, "additional_messages")
            messages.add_messages(session, tenant_id, thread_id, extra, now)
            tool_resources.attach_files(uow, ctx, tenant_id, thread_id, body.additional_messages)
        run = _new_run(ctx, tenant_id, thread_id, assistant, body)
        run.additional_instructions = body.additional_instructions
        run.reasoning_effort = body.reasoning_effort or assistant.reasoning_effort
        run.search_content = search_content
        return _accept(ctx, uow, run, [], watch)


def create_thread_and_run(
    ctx: Context, tenant_id: str, body: CreateThreadAndRun, *, watch: Watch | None = None
) -> Accepted:
    with ctx.uow() as uow:
        session = uow.session
        assistant = assistants.read(session, tenant_id, body.assistant_id)
        spec = body.thread
        thread = models.Thread(
            id=new_id("thread"),
            tenant_id=tenant_id,
            created_at=ctx.timestamp(),
            created_us=monotonic_us(),
            metadata_=(spec.metadata if spec else None) or {},
            tool_resources=tool_resources.resolve(
                uow, ctx, tenant_id, body.tool_resources or (spec.tool_resources if spec else None)
            ),
        )
        written = spec.messages if spec and spec.messages else []
        messages.check_images(session, tenant_id, written, ctx.timestamp(), "thread.messages")
        new = messages.new_messages(tenant_id, thread.id, written, ctx.timestamp())
        if any(message.attachments for message in written):
            # An ORM object, flushed: attaching files below may give the thread a store, which its
            # thread.created event must show.
            session.add(thread)
            session.flush()
            rows.add(session, *new)
            tool_resources.attach_files(uow, ctx, tenant_id, thread.id, written)
            before = ()
        else:
            before = (thread, *new)  # Core rows, inserted with the run's own statement
        run = _new_run(ctx, tenant_id, thread.id, assistant, body)
        return _accept(ctx, uow, run, [(RunEvent.THREAD_CREATED, wire.thread(thread))], watch, before)


def _new_run(ctx: Context, tenant_id: str, thread_id: str, assistant: models.Assistant, body: RunOptions):
    tools = [as_json(t) for t in body.tools] if body.tools is not None else assistant.tools
    _check_tool_choice(body, tools)
    return lifecycle.new_run(
        ctx,
        tenant_id,
        Api.ASSISTANTS,
        thread_id=thread_id,
        assistant_id=assistant.id,
        model=body.model or assistant.model,
        instructions=body.instructions if body.instructions is not None else (assistant.instructions or ""),
        tools=tools,
        metadata_=body.metadata or {},
        temperature=body.temperature if body.temperature is not None else assistant.temperature,
        top_p=body.top_p if body.top_p is not None else assistant.top_p,
        max_prompt_tokens=body.max_prompt_tokens,
        max_completion_tokens=body.max_completion_tokens,
        truncation_strategy=as_json(body.truncation_strategy) or dict(DEFAULT_TRUNCATION),
        tool_choice=as_json(body.tool_choice) or "auto",
        parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        response_format=as_json(body.response_format) or assistant.response_format or "auto",
    )


def _check_tool_choice(body: RunOptions, tools: list[dict]) -> None:
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        return
    if choice.type == "function":
        name = choice.function.name if choice.function else None
        names = {t["function"]["name"] for t in tools if t.get("type") == "function"}
        if name not in names:
            raise InvalidRequest(
                f"Invalid 'tool_choice': function '{name}' is not one of the run's tools.",
                param="tool_choice",
            )
    elif not any(t.get("type") == choice.type for t in tools):
        raise InvalidRequest(
            f"Invalid 'tool_choice': the run has no {choice.type} tool.", param="tool_choice"
        )


def _accept(
    ctx: Context,
    uow: UnitOfWork,
    run: models.Run,
    first: list[tuple[RunEvent, dict]],
    watch: Watch | None,
    before: tuple = (),
) -> Accepted:
    """`before`: new rows the run's INSERT inserts first (its thread and messages)."""
    session = uow.session
    data = wire.run(run)
    for event, payload in [*first, (RunEvent.RUN_CREATED, data), (RunEvent.RUN_QUEUED, data)]:
        uow.events.record(run.id, run.tenant_id, event, payload)
    uow.events.numbered_new(run, len(first) + 2)
    try:
        # Handed out now, or waiting for a place in its tenant's window (services/dispatch.py).
        if dispatch.insert_new(ctx, uow, run, before):
            uow.after_commit(lambda: ctx.queue.enqueue(run.id))
        _watch(run.id, watch)
        _answer(uow, data, watch, cursor=0)
        uow.commit()
    except IntegrityError as error:
        # Promise 3 lives in the database: the partial unique index allows one active run per thread.
        # Postgres names the index; SQLite (orchestrator dev) names its column, the only unique one alone.
        if not any(name in str(error.orig) for name in ("uq_runs_one_active_per_thread", "runs.thread_id")):
            raise
        session.rollback()
        active = runs.active_run_id(session, run.thread_id)
        raise InvalidRequest(f"Thread {run.thread_id} already has an active run {active}.") from None
    return Accepted(data, 0, tuple(uow.events.committed_of(run.id)))


def _answer(uow: UnitOfWork, run: dict, watch: Watch | None, *, cursor: int) -> None:
    """What a retry of this request gets, stored with its Idempotency-Key in the change's own transaction
    (services/idempotency.py): the run, or its stream from `cursor`."""
    if watch is not None:
        idempotency.answer_stream(uow, run["thread_id"], run["id"], cursor)
    else:
        idempotency.answer(uow, run)


def _watch(run_id: str, watch: Watch | None) -> None:
    """Subscribe the change's stream before it commits: whatever happens to the run later (a worker, a
    cancel waiting on this transaction's row lock, a hand-out of a waiting run) is committed after this
    commit and published to the stream live. The caller unsubscribes if the change fails."""
    if watch is not None:
        watch(run_id)


def get(ctx: Context, tenant_id: str, thread_id: str, run_id: str) -> dict:
    with ctx.uow() as uow:
        run = load(uow.session, tenant_id, thread_id, run_id)
        if not lifecycle.is_overdue(ctx, run):
            return wire.run(run)
    lifecycle.expire(ctx, run_id)
    with ctx.uow() as uow:
        return wire.run(load(uow.session, tenant_id, thread_id, run_id))


def list_(ctx: Context, tenant_id: str, thread_id: str, **query) -> dict:
    with ctx.uow() as uow:
        threads.load(uow.session, tenant_id, thread_id)
        return page(
            uow.session, models.Run, runs.scope(tenant_id, thread_id), serialize=each(wire.run), **query
        )


def modify(ctx: Context, tenant_id: str, thread_id: str, run_id: str, metadata: dict | None) -> dict:
    with ctx.uow() as uow:
        run = load(uow.session, tenant_id, thread_id, run_id, for_update=True)
        if metadata is not None:
            runs.set_metadata(run, metadata)
        uow.commit()
        return wire.run(run)


def cancel(ctx: Context, tenant_id: str, thread_id: str, run_id: str) -> dict:
    _expire_if_overdue(ctx, tenant_id, thread_id, run_id)
    with ctx.uow() as uow:
        run = load(uow.session, tenant_id, thread_id, run_id, for_update=True)
        if run.status not in CANCELLABLE:
            raise InvalidRequest(f"Cannot cancel run with status '{run.status}'.")
        moved = lifecycle.move(uow, run.id, RunStatus.CANCELLING, ANYONE, ctx.clock.now())
        lifecycle.nudge_holder(ctx, uow, moved)
        answer = wire.run(moved)
        idempotency.answer(uow, answer)
        uow.commit()
    # Nobody is working on a queued or waiting run: end it now. A worker holding the lease ends it itself.
    if not lifecycle.finish_cancel(ctx, run_id, UNLEASED):
        ctx.queue.enqueue(run_id)
    return answer


def submit_tool_outputs(
    ctx: Context,
    tenant_id: str,
    thread_id: str,
    run_id: str,
    body: SubmitToolOutputs,
    *,
    watch: Watch | None = None,
) -> Accepted:
    _expire_if_overdue(ctx, tenant_id, thread_id, run_id)
    with ctx.uow() as uow:
        session = uow.session
        run = load(session, tenant_id, thread_id, run_id, for_update=True)
        if run.status is not RunStatus.REQUIRES_ACTION:
            raise InvalidRequest(f'Runs in status "{run.status}" do not accept tool outputs.')
        expected = [call["id"] for call in run.required_action["submit_tool_outputs"]["tool_calls"]]
        outputs = {item.tool_call_id: item.output for item in body.tool_outputs}
        if sorted(outputs) != sorted(expected) or len(outputs) != len(body.tool_outputs):
            raise InvalidRequest(
                f"Expected tool outputs for call_ids {expected}, got {[o.tool_call_id for o in body.tool_outputs]}"
            )
        cursor = run.event_seq
        _complete_tool_step(uow, run, outputs, ctx.timestamp())
        moved = lifecycle.move(
            uow, run.id, RunStatus.QUEUED, ANYONE, ctx.clock.now(), enqueued_at=ctx.clock.now()
        )
        _watch(run_id, watch)
        shown = wire.run(moved)
        _answer(uow, shown, watch, cursor=cursor)
        uow.after_commit(lambda: ctx.queue.enqueue(run_id))
        uow.commit()
        return Accepted(shown, cursor, tuple(uow.events.committed_of(run_id)))


def _complete_tool_step(uow: UnitOfWork, run: models.Run, outputs: dict, now: int) -> None:
    step = uow.session.get(models.RunStep, steps.open_step(uow.session, run.id).id)
    details = dict(step.step_details)
    details["tool_calls"] = [
        {**call, "function": {**call["function"], "output": outputs[call["id"]]}}
        if call["type"] == "function"
        else call  # a server-side call of the same step, done before the run asked for outputs
        for call in details["tool_calls"]
    ]
    step.step_details = details
    step.status, step.completed_at = StepStatus.COMPLETED, now
    step.usage, step.pending_usage = step.pending_usage, None
    uow.session.flush()
    shown = wire.step(step, search_content=run.search_content)
    uow.events.record(run.id, run.tenant_id, RunEvent.STEP_COMPLETED, shown)


def _expire_if_overdue(ctx: Context, tenant_id: str, thread_id: str, run_id: str) -> None:
    with ctx.uow() as uow:
        overdue = lifecycle.is_overdue(ctx, load(uow.session, tenant_id, thread_id, run_id))
    if overdue:
        lifecycle.expire(ctx, run_id)


def list_steps(
    ctx: Context, tenant_id: str, thread_id: str, run_id: str, *, search_content: bool = False, **query
) -> dict:
    with ctx.uow() as uow:
        load(uow.session, tenant_id, thread_id, run_id)
        scope = [models.RunStep.run_id == run_id, models.RunStep.tenant_id == tenant_id]
        serialize = functools.partial(wire.step, search_content=search_content)
        return page(uow.session, models.RunStep, scope, serialize=each(serialize), **query)


def get_step(
    ctx: Context, tenant_id: str, thread_id: str, run_id: str, step_id: str, *, search_content: bool = False
) -> dict:
    with ctx.uow() as uow:
        load(uow.session, tenant_id, thread_id, run_id)
        step = uow.session.scalar(
            select(models.RunStep).where(
                models.RunStep.id == step_id,
                models.RunStep.run_id == run_id,
                models.RunStep.tenant_id == tenant_id,
            )
        )
        if step is None:
            raise not_found("step", step_id)
        return wire.step(step, search_content=search_content)


def load(
    session: Session, tenant_id: str, thread_id: str, run_id: str, *, for_update: bool = False
) -> models.Run:
    threads.load(session, tenant_id, thread_id)
    return runs.load(session, tenant_id, thread_id, run_id, for_update=for_update)
