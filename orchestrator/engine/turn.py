"""One model call of a run, from the prompt to the end of the run's leg.

    read the model (model_reader) ─▶ ModelCall.take: the decisions (domain/model_call.py)
        Open  ─▶ turn_steps.open_step: the step (and message), a block of delta numbers
        Delta ─▶ DeltaStream.publish
    server-side tool calls ─▶ hosted.run_calls ─▶ turn_steps.complete_hosted: the run goes on (play → True)
    end ─▶ ModelCall.ending ─▶ turn_steps.end_leg: completed | incomplete | requires_action | cancelled | failed

Every write is fenced by the lease owner token, so a worker that lost its lease (it stalled, or the run was
cancelled or expired) cannot commit anything; the process's LeaseKeeper says when that happened.
"""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.db.steps import OpenStep
from orchestrator.domain.errors import StaleRun
from orchestrator.domain.lifecycle import RunEvent, RunStatus
from orchestrator.domain.model import ModelError, ModelProvider, ModelRequest
from orchestrator.domain.model_call import Delta, ModelCall, Open, failed
from orchestrator.engine import hosted, model_reader, turn_steps
from orchestrator.engine.deltas import DeltaStream
from orchestrator.observability import logs


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
        self.call = ModelCall(request.prompt_tokens, hosted=frozenset(request.hosted))
        self.step: OpenStep | None = None
        self.turn = 0  # the step's turn
        self.deltas: DeltaStream | None = None

    def play(self) -> bool:
        """Play the call; True when it ran server-side tools and the run goes on with another call."""
        executed = hosted.Executed()
        with self.ctx.leases.hold(self.run.id, self.owner) as hold:
            try:
                for chunk in model_reader.read(self.model, self.request, hold):
                    for effect in self.call.take(chunk):
                        self._apply(effect)
                if self.call.hosted_calls and not hold.cancelled.is_set() and not hold.lost.is_set():
                    calls = self.call.hosted_calls
                    executed = hosted.run_calls(self.ctx, self.run, self.turn, calls, hold)
            except (ModelError, hosted.HostedToolFailed) as error:
                turn_steps.end_leg(
                    self.ctx, self.run, self.owner, self.step, self.call, failed(error.code, error.message)
                )
                return False
            for entry in executed.deltas:
                details = {"step_details": {"type": "tool_calls", "tool_calls": [entry]}}
                self.deltas.publish(RunEvent.STEP_DELTA, self.step.id, details)
        if hold.lost.is_set():
            raise StaleRun(self.run.id)
        ending = self.call.ending(cancelled=hold.cancelled.is_set())
        if ending.target is RunStatus.IN_PROGRESS:
            turn_steps.complete_hosted(
                self.ctx, self.run, self.owner, self.step, self.call, executed.stored, executed.failure
            )
            return True
        turn_steps.end_leg(self.ctx, self.run, self.owner, self.step, self.call, ending, executed.stored)
        return False

    def _apply(self, effect: Open | Delta) -> None:
        if isinstance(effect, Open):
            opened = turn_steps.open_step(self.ctx, self.run, self.owner, effect.kind, resumed=self.resumed)
            self.step, self.call.streamed, self.turn = opened.step, opened.streamed, opened.turn
            self.call.images, self.call.images_shown = list(opened.images), opened.images_shown
            self.deltas = DeltaStream(self.ctx, self.run.id, self.owner, opened.before, opened.prev)
            logs.bind(step_id=opened.step.id)
            return
        target = self.step.message_id if effect.on_message else self.step.id
        self.deltas.publish(effect.event, target, effect.delta)
