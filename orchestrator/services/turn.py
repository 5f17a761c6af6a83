"""One model turn of a run: stream the model, open the step (and message) at the first output, relay
deltas, and end the turn with one fenced transaction."""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import delete, select

from orchestrator.db import models
from orchestrator.db.events import DELTA_BLOCK, EventBatch, reserve_block
from orchestrator.db.transitions import transition
from orchestrator.domain.clock import monotonic_us
from orchestrator.domain.errors import LeaseLost
from orchestrator.domain.ids import new_id
from orchestrator.domain.lifecycle import MessageStatus, Role, RunStatus, StepStatus, StepType
from orchestrator.observability import logs
from orchestrator.providers.base import (
    Finish,
    ModelError,
    ModelProvider,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from orchestrator.services import wire
from orchestrator.services.context import Context
from orchestrator.services.endings import end_run
from orchestrator.services.lease import Hold
from orchestrator.services.recovery import streamed_content

log = logging.getLogger(__name__)

_END, _WAKE = object(), object()


class Turn:
    def __init__(
        self,
        ctx: Context,
        run: models.Run,
        owner: str,
        model: ModelProvider,
        request: ModelRequest,
        *,
        resumed: bool = True,
    ):
        self.ctx, self.run, self.owner, self.model, self.request = ctx, run, owner, model, request
        self.resumed = resumed  # taken over in progress: a dead worker's step may be waiting to be redone
        self.step_id: str | None = None
        self.message_id: str | None = None
        self.text = ""
        self.calls: list[dict] = []
        self.usage = {"prompt_tokens": request.prompt_tokens, "completion_tokens": 0, "total_tokens": 0}
        self.finish = "stop"
        # Deltas are numbered from a reserved block; `_block_prev` is the last lifecycle event before the
        # block, sent along as `prev` so a watcher knows which durable events must precede each delta.
        self._seq = self._block_end = self._block_prev = 0
        self._streamed = ""  # text a dead worker already streamed for the message this turn redoes

    def play(self) -> None:
        with self.ctx.leases().hold(self.run.id, self.owner) as lease:
            try:
                self._consume(lease)
            except ModelError as error:
                self._end(RunStatus.FAILED, last_error={"code": error.code, "message": error.message})
                return
        if lease.lost.is_set():
            raise LeaseLost(self.run.id)
        if lease.cancelled.is_set():
            self._end(RunStatus.CANCELLED)
        elif self.calls:
            self._ask_for_tools()
        elif self.finish == "length":
            self._end(RunStatus.INCOMPLETE, incomplete_details={"reason": "max_completion_tokens"})
        else:
            self._end(RunStatus.COMPLETED)

    def _consume(self, lease: Hold) -> None:
        """Read the model on a pump thread so a cancel is honoured even while the model is silent."""
        inbox: queue.Queue = queue.Queue()
        stop = threading.Event()
        lease.on_signal = lambda: inbox.put(_WAKE)
        pump = threading.Thread(
            target=self._pump, args=(inbox, stop), name=f"model-{self.run.id}", daemon=True
        )
        pump.start()
        while True:
            item = inbox.get()
            if lease.cancelled.is_set() or lease.lost.is_set():
                stop.set()
                abort = getattr(self.model, "abort", None)
                if abort:
                    abort()  # closes the upstream response now; the pump thread then ends by itself
                return
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if item is not _WAKE:
                self._take(item)

    def _pump(self, inbox: queue.Queue, stop: threading.Event) -> None:
        stream = self.model.stream(self.request)
        try:
            for chunk in stream:
                if stop.is_set():
                    break
                inbox.put(chunk)
            inbox.put(_END)
        except Exception as error:
            inbox.put(error)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()

    def _take(self, chunk) -> None:
        match chunk:
            case TextDelta(text=text) if text:
                self._open(StepType.MESSAGE_CREATION)
                self.text += text
                self._text_delta(text)
            case ToolCallDelta():
                self._open(StepType.TOOL_CALLS)
                self._tool_fragment(chunk)
            case Usage(prompt_tokens=prompt, completion_tokens=completion):
                self.usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
            case Finish(reason=reason):
                self.finish = reason

    def _text_delta(self, text: str) -> None:
        """Relay new text. When this turn redoes a dead worker's reply, watchers already hold what it
        streamed: the redone text is relayed only from where theirs ends (or from where it differs)."""
        first = self.text == text and not self._streamed
        if self._streamed:
            if self._streamed.startswith(self.text):
                return  # still within what was streamed before
            if self.text.startswith(self._streamed):
                text = self.text[len(self._streamed) :]
            self._streamed = ""
        part = {"index": 0, "type": "text", "text": {"value": text, **({"annotations": []} if first else {})}}
        self._delta("thread.message.delta", self.message_id, "thread.message.delta", {"content": [part]})

    def _tool_fragment(self, chunk: ToolCallDelta) -> None:
        if chunk.index == len(self.calls):
            call_id = chunk.id or "call_" + new_id("x")[2:26]
            self.calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": chunk.name or "", "arguments": chunk.arguments},
                }
            )
            entry = {
                "index": chunk.index,
                "id": call_id,
                "type": "function",
                "function": {"name": chunk.name or "", "arguments": chunk.arguments, "output": None},
            }
        else:
            self.calls[chunk.index]["function"]["arguments"] += chunk.arguments
            entry = {"index": chunk.index, "type": "function", "function": {"arguments": chunk.arguments}}
        details = {"step_details": {"type": "tool_calls", "tool_calls": [entry]}}
        self._delta("thread.run.step.delta", self.step_id, "thread.run.step.delta", details)

    # --- the step and message of this turn -------------------------------------------------------

    def _open(self, kind: StepType) -> None:
        if self.step_id is not None:
            return
        with self.ctx.uow() as uow:
            session = uow.session
            run = self._fenced(session)
            batch = EventBatch(run.id, run.tenant_id)
            stale = self._resume_step(session, run, kind) if self.resumed else None
            step = stale or self._new_step(session, batch, run, kind)
            batch.write(uow, self.ctx.bus, run, self.ctx.clock.now(), reserve_deltas=True)
            self._seq = run.event_seq - DELTA_BLOCK
            self._block_end = self._seq + DELTA_BLOCK
            self._block_prev = run.lifecycle_seq
            uow.commit()
        self.step_id = step.id
        logs.bind(step_id=step.id)

    def _resume_step(self, session, run: models.Run, kind: StepType) -> models.RunStep | None:
        """A step still in progress when a turn starts was left by a worker that died: the turn is redone
        in it (same step, same message) so the run never shows a doubled step or message."""
        stale = session.scalar(
            select(models.RunStep).where(
                models.RunStep.run_id == run.id,
                models.RunStep.turn == run.turn,
                models.RunStep.status == StepStatus.IN_PROGRESS.value,
            )
        )
        if stale is None:
            return None
        if stale.type == kind.value:
            if kind is StepType.MESSAGE_CREATION:
                self.message_id = stale.step_details["message_creation"]["message_id"]
                streamed = streamed_content(self.ctx, run.id, self.message_id)
                self._streamed = streamed[0]["text"]["value"] if streamed else ""
            return stale
        session.execute(
            delete(models.Message).where(models.Message.run_id == run.id, models.Message.turn == run.turn)
        )
        session.delete(stale)
        run.turn -= 1
        session.flush()
        return None

    def _new_step(self, session, batch: EventBatch, run: models.Run, kind: StepType) -> models.RunStep:
        run.turn += 1
        now = self.ctx.now()
        message = self._message(session, run, run.turn, now) if kind is StepType.MESSAGE_CREATION else None
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
            turn=run.turn,
            type=kind.value,
            status=StepStatus.IN_PROGRESS.value,
            step_details=details,
            metadata_={},
        )
        session.add(step)
        session.flush()
        batch.add("thread.run.step.created", wire.step(step))
        batch.add("thread.run.step.in_progress", wire.step(step))
        if message is not None:
            batch.add("thread.message.created", wire.message(message))
            batch.add("thread.message.in_progress", wire.message(message))
        return step

    def _message(self, session, run: models.Run, turn: int, now: int) -> models.Message:
        message = models.Message(
            id=new_id("msg"),
            tenant_id=run.tenant_id,
            thread_id=run.thread_id,
            created_at=now,
            created_us=monotonic_us(),
            role=Role.ASSISTANT.value,
            status=MessageStatus.IN_PROGRESS.value,
            content=[],
            assistant_id=run.assistant_id,
            run_id=run.id,
            turn=turn,
            attachments=[],
            metadata_={},
        )
        session.add(message)
        self.message_id = message.id
        return message

    def _fenced(self, session) -> models.Run:
        run = session.scalar(
            select(models.Run)
            .where(
                models.Run.id == self.run.id,
                models.Run.lease_owner == self.owner,
                models.Run.status == RunStatus.IN_PROGRESS.value,
            )
            .with_for_update()
        )
        if run is None:
            raise LeaseLost(self.run.id)
        return run

    # --- deltas ------------------------------------------------------------------------------------

    def _delta(self, event: str, object_id: str | None, kind: str, delta: dict) -> None:
        if self._seq + 1 >= self._block_end:
            with self.ctx.uow() as uow:
                run = self._fenced(uow.session)
                self._seq, self._block_prev = reserve_block(run), run.lifecycle_seq
                self._block_end = self._seq + DELTA_BLOCK
                uow.commit()
        self._seq += 1
        # Best effort, never blocking the turn: the bus batches deltas and drops them while Redis is away
        # (the durable events still carry the final objects).
        self.ctx.bus.publish_delta(
            self.run.id,
            {
                "seq": self._seq,
                "prev": self._block_prev,
                "event": event,
                "data": {"id": object_id, "object": kind, "delta": delta},
            },
        )

    # --- endings -------------------------------------------------------------------------------------

    def _content(self) -> list[dict] | None:
        if self.message_id is None:
            return None
        return [{"type": "text", "text": {"value": self.text, "annotations": []}}]

    def _run_usage(self, run: models.Run) -> dict:
        before = run.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return {key: before[key] + self.usage[key] for key in before}

    def _step_usage(self) -> dict:
        return {**self.usage, "total_tokens": self.usage["prompt_tokens"] + self.usage["completion_tokens"]}

    def _end(self, target: RunStatus, **values) -> None:
        try:
            self._finish(target, values)
        except LeaseLost:
            # A cancel landed while the model was finishing: cancel wins, keeping what was written.
            if not self._still_ours_and_cancelling():
                raise
            self._finish(RunStatus.CANCELLED, {})

    def _finish(self, target: RunStatus, values: dict) -> None:
        """End step, message and run in one transaction, fenced by the lease (the run row itself is
        current: this worker's lease is the only writer of its usage)."""
        with self.ctx.uow() as uow:
            batch = EventBatch(self.run.id, self.run.tenant_id)
            self.usage = self._step_usage()
            ended = end_run(
                self.ctx,
                uow.session,
                batch,
                self.run.id,
                target,
                owner=self.owner,
                content=self._content(),
                step_usage=self.usage,
                usage=self._run_usage(self.run),
                **values,
            )
            batch.write(uow, self.ctx.bus, ended, self.ctx.clock.now())
            uow.commit()

    def _still_ours_and_cancelling(self) -> bool:
        with self.ctx.uow() as uow:
            status = uow.session.scalar(
                select(models.Run.status).where(
                    models.Run.id == self.run.id, models.Run.lease_owner == self.owner
                )
            )
        return status == RunStatus.CANCELLING

    def _ask_for_tools(self) -> None:
        with self.ctx.uow() as uow:
            session = uow.session
            run = self.run
            step = session.get(models.RunStep, self.step_id)
            step.step_details = {
                "type": "tool_calls",
                "tool_calls": [{**c, "function": {**c["function"], "output": None}} for c in self.calls],
            }
            step.pending_usage = self._step_usage()
            batch = EventBatch(run.id, run.tenant_id)
            required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": self.calls}}
            moved = transition(
                session,
                batch,
                run.id,
                RunStatus.REQUIRES_ACTION,
                now=self.ctx.now(),
                owner=self.owner,
                release=True,
                required_action=required,
                usage=self._run_usage(run),
            )
            if moved is None:
                raise LeaseLost(run.id)
            batch.write(uow, self.ctx.bus, moved, self.ctx.clock.now())
            uow.commit()
