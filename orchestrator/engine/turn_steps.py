"""The writes of one model call of a thread's run (the Assistants face): open its step (and message) at
the first output, stream its deltas, ask for tool outputs, end the run's leg. Each write is one
transaction fenced by the lease, whose statements number its events. `StepWriter` is what the turn
(engine/turn.py) calls; a Response's run has its own (engine/response_writer.py)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.context import Context
from orchestrator.db import models, rows, runs, steps
from orchestrator.db.events import DELTA_BLOCK
from orchestrator.db.runs import Writer
from orchestrator.db.steps import OpenStep
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import (
    Api,
    MessageStatus,
    Role,
    RunEvent,
    RunStatus,
    StepEvent,
    StepStatus,
    StepType,
)
from orchestrator.domain.model_call import Delta, Ending, ModelCall, Open, add_usage
from orchestrator.engine import hosted, lifecycle, wire
from orchestrator.engine.deltas import DeltaStream
from orchestrator.engine.recovery import streamed_content
from orchestrator.observability import logs


class StepWriter:
    """The run's side of one model call: its step, its message and its deltas."""

    def __init__(self, ctx: Context, run: models.Run, owner: str, *, resumed: bool):
        self.ctx, self.run, self.owner, self.resumed = ctx, run, owner, resumed
        self.step: OpenStep | None = None
        self.turn = 0  # the step's turn (file_search's citation markers name it)
        self.deltas: DeltaStream | None = None

    def apply(self, effect: Open | Delta, call: ModelCall) -> None:
        if isinstance(effect, Open):
            opened = open_step(self.ctx, self.run, self.owner, effect.kind, resumed=self.resumed)
            self.step, call.streamed, self.turn = opened.step, opened.streamed, opened.turn
            call.images, call.images_shown = list(opened.images), opened.images_shown
            self.deltas = DeltaStream(self.ctx, self.run.id, self.owner, opened.before, opened.prev)
            logs.bind(step_id=opened.step.id)
            return
        target = self.step.message_id if effect.on_message else self.step.id
        self.deltas.publish(effect.event, target, effect.delta)

    def due(self) -> None:
        """Nothing is held back: deltas go to Redis as they come (the bus batches them)."""

    def flush(self) -> None:
        pass

    def sources(self) -> hosted.Sources:
        return hosted.run_sources(self.ctx, self.run)

    def executed(self, done: hosted.Executed) -> None:
        for entry in done.deltas:
            details = {"step_details": {"type": "tool_calls", "tool_calls": [entry]}}
            self.deltas.publish(RunEvent.STEP_DELTA, self.step.id, details)

    def complete_hosted(self, call: ModelCall, done: dict[int, dict], failure: dict | None = None) -> None:
        complete_hosted(self.ctx, self.run, self.owner, self.step, call, done, failure)

    def end_leg(self, call: ModelCall, ending: Ending, done: dict[int, dict] | None = None) -> None:
        end_leg(self.ctx, self.run, self.owner, self.step, call, ending, done)


@dataclass(frozen=True)
class Opened:
    step: OpenStep
    before: int  # the number before the block reserved for the step's deltas
    prev: int  # the last lifecycle event before that block
    streamed: str = ""  # what a dead worker already streamed of the message this call redoes
    turn: int = 0  # the step's turn (file_search's citation markers name it)
    images: tuple[str, ...] = ()  # the image files the message shows before its text
    images_shown: bool = False  # a dead worker had streamed them already


def open_step(ctx: Context, run: models.Run, owner: str, kind: StepType, *, resumed: bool) -> Opened:
    """Open the call's step. A step still in progress when a call starts was left by a worker that died:
    the call is redone in it (same step, same message), so the run never shows a doubled step or message.
    A left step of the other kind is discarded and replaced, in the same turn."""
    with ctx.uow() as uow:
        stale = steps.open_step(uow.session, run.id, turn=run.turn) if resumed else None
        images = tuple(hosted.images_to_show(uow.session, run)) if kind is StepType.MESSAGE_CREATION else ()
        if stale is not None and stale.kind is kind:
            row = runs.fence(uow.session, run.id, owner, reserve_deltas=True)
            uow.commit()
            streamed = streamed_content(ctx, run.id, stale.message_id)
            before, prev = row.event_seq - DELTA_BLOCK, row.lifecycle_seq
            return Opened(stale, before, prev, _text_of(streamed), run.turn, images, bool(streamed))
        if stale is not None:
            steps.discard_turn(uow.session, run.id, run.turn, stale.id)
        turn = run.turn if stale is not None else run.turn + 1
        step = _new_step(ctx, uow, run, kind, turn)
        count = uow.events.pending(run.id)
        row = runs.fence(uow.session, run.id, owner, turn=turn, events=count, reserve_deltas=True)
        uow.events.numbered(run.id, run.tenant_id, row, count)
        uow.commit()
    return Opened(step, row.event_seq - DELTA_BLOCK, row.lifecycle_seq, turn=turn, images=images)


def _text_of(content: list[dict] | None) -> str:
    return next((part["text"]["value"] for part in content or [] if part.get("type") == "text"), "")


def _new_step(ctx: Context, uow, run: models.Run, kind: StepType, turn: int) -> OpenStep:
    now = int(ctx.clock.now())
    message = _message(run, turn, now) if kind is StepType.MESSAGE_CREATION else None
    details = (
        {"type": kind.value, "message_creation": {"message_id": message.id}}
        if message
        else {"type": kind.value, "tool_calls": []}
    )
    step = models.RunStep(
        id=new_id("step"),
        tenant_id=run.tenant_id,
        run_id=run.id,
        thread_id=run.thread_id,
        assistant_id=run.assistant_id,
        created_at=now,
        created_us=monotonic_us(),
        turn=turn,
        type=kind,
        status=StepStatus.IN_PROGRESS,
        step_details=details,
        metadata_={},
    )
    rows.add(uow.session, step, *([message] if message is not None else []))
    record, shown = uow.events.record, wire.step(step)  # both events show the same object
    record(run.id, run.tenant_id, RunEvent.STEP_CREATED, shown)
    record(run.id, run.tenant_id, RunEvent.STEP_IN_PROGRESS, shown)
    if message is not None:
        shown = wire.message(message)
        record(run.id, run.tenant_id, RunEvent.MESSAGE_CREATED, shown)
        record(run.id, run.tenant_id, RunEvent.MESSAGE_IN_PROGRESS, shown)
    return OpenStep(step.id, kind, message.id if message else None)


def _message(run: models.Run, turn: int, now: int) -> models.Message:
    return models.Message(
        id=new_id("msg"),
        tenant_id=run.tenant_id,
        thread_id=run.thread_id,
        created_at=now,
        created_us=monotonic_us(),
        role=Role.ASSISTANT,
        status=MessageStatus.IN_PROGRESS,
        content=[],
        assistant_id=run.assistant_id,
        run_id=run.id,
        turn=turn,
        attachments=[],
        metadata_={},
    )


def end_leg(
    ctx: Context,
    run: models.Run,
    owner: str,
    step: OpenStep | None,
    call: ModelCall,
    ending: Ending,
    hosted_done: dict[int, dict] | None = None,
) -> None:
    """End the step, its message and the run's leg as `ending` says: one transaction. A cancel that
    landed while the model was finishing wins, keeping what was written."""
    try:
        _end(ctx, run, owner, step, call, ending, hosted_done)
    except StaleWrite:
        with ctx.uow() as uow:
            cancelling = runs.holder_status(uow.session, run.id, owner) is RunStatus.CANCELLING
        if not cancelling:
            raise
        _end(ctx, run, owner, step, call, Ending(RunStatus.CANCELLED))


def complete_hosted(
    ctx: Context,
    run: models.Run,
    owner: str,
    step: OpenStep,
    call: ModelCall,
    done: dict[int, dict],
    failure: dict[str, str] | None = None,
) -> None:
    """Store the server-side calls' results and end their step: completed, or failed with `failure` as its
    last_error when a call could not be run; the run stays in progress for the model's next call, which
    reads each call's result (a call that did not run says so). Once this commits, nobody runs these
    calls again."""
    usage = call.usage()
    with ctx.uow() as uow:
        details = {"type": "tool_calls", "tool_calls": call.tool_calls(done)}
        now = int(ctx.clock.now())
        status = StepStatus.FAILED if failure else StepStatus.COMPLETED
        ending = {"failed_at": now, "last_error": failure} if failure else {"completed_at": now}
        row = steps.end_step(uow.session, step.id, status, step_details=details, usage=usage, **ending)
        shown = wire.step(row, search_content=bool(run.search_content))
        uow.events.record(run.id, run.tenant_id, StepEvent.of_step(status), shown)
        count = uow.events.pending(run.id)
        fenced = runs.fence(uow.session, run.id, owner, events=count, usage=add_usage(run.usage, usage))
        uow.events.numbered(run.id, run.tenant_id, fenced, count)
        uow.commit()


def _end(
    ctx: Context, run: models.Run, owner: str, step, call: ModelCall, ending: Ending, hosted_done=None
) -> None:
    usage = call.usage()
    with ctx.uow() as uow:
        if ending.target is RunStatus.REQUIRES_ACTION:
            _ask_for_tools(ctx, uow, run, owner, step, call, ending, hosted_done)
        else:
            lifecycle.end(
                ctx,
                uow,
                run.id,
                ending.target,
                Writer.holder(owner),
                api=Api.ASSISTANTS,
                step=step,
                content=hosted.annotate(uow.session, run, call.content()),
                step_usage=usage,
                usage=add_usage(run.usage, usage),
                **ending.values,
            )
        uow.commit()


def _ask_for_tools(
    ctx, uow, run: models.Run, owner: str, step: OpenStep, call: ModelCall, ending: Ending, hosted_done
) -> None:
    """The step keeps the calls (server-side ones done) and the call's usage (shown once the outputs
    arrive); the run waits."""
    details = {"type": "tool_calls", "tool_calls": call.tool_calls(hosted_done)}
    steps.update_step(uow.session, step.id, step_details=details, pending_usage=call.usage())
    moved = lifecycle.move(
        uow,
        run.id,
        RunStatus.REQUIRES_ACTION,
        Writer.holder(owner),
        ctx.clock.now(),
        release=True,
        usage=add_usage(run.usage, call.usage()),
        **ending.values,
    )
    lifecycle.leave(ctx, uow, moved)
