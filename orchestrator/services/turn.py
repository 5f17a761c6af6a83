"""One model call of a run, from the prompt to the end of the run's leg.

    read the model (model_reader) ─▶ ModelCall.take: the decisions (domain/model_call.py)
        Open  ─▶ turn_steps.open_step: the step (and message), a block of delta numbers
        Delta ─▶ DeltaStream.publish
    end ─▶ ModelCall.ending ─▶ turn_steps.end_leg: completed | incomplete | requires_action | cancelled | failed

Every write is fenced by the lease owner token, so a worker that lost its lease (it stalled, or the run was
cancelled or expired) cannot commit anything; the process's LeaseKeeper says when that happened.
"""

from __future__ import annotations

from orchestrator.db import models
from orchestrator.db.steps import OpenStep
from orchestrator.domain.errors import StaleRun
from orchestrator.domain.model import ModelError, ModelProvider, ModelRequest
from orchestrator.domain.model_call import Delta, ModelCall, Open, failed
from orchestrator.observability import logs
from orchestrator.services import lease, model_reader, turn_steps
from orchestrator.services.context import Context
from orchestrator.services.deltas import DeltaStream


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
        self.call = ModelCall(request.prompt_tokens)
        self.step: OpenStep | None = None
        self.deltas: DeltaStream | None = None

    def play(self) -> None:
        with lease.keeper(self.ctx).hold(self.run.id, self.owner) as hold:
            try:
                for chunk in model_reader.read(self.model, self.request, hold):
                    for effect in self.call.take(chunk):
                        self._apply(effect)
            except ModelError as error:
                turn_steps.end_leg(
                    self.ctx, self.run, self.owner, self.step, self.call, failed(error.code, error.message)
                )
                return
        if hold.lost.is_set():
            raise StaleRun(self.run.id)
        ending = self.call.ending(cancelled=hold.cancelled.is_set())
        turn_steps.end_leg(self.ctx, self.run, self.owner, self.step, self.call, ending)

    def _apply(self, effect: Open | Delta) -> None:
        if isinstance(effect, Open):
            opened = turn_steps.open_step(self.ctx, self.run, self.owner, effect.kind, resumed=self.resumed)
            self.step, self.call.streamed = opened.step, opened.streamed
            self.deltas = DeltaStream(self.ctx, self.run.id, self.owner, opened.before, opened.prev)
            logs.bind(step_id=opened.step.id)
            return
        target = self.step.message_id if effect.on_message else self.step.id
        self.deltas.publish(effect.event, target, effect.delta)
