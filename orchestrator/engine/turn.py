"""One model call of a run, from the prompt to the end of the run's leg.

    read the model (model_reader) ─▶ ModelCall.take: the decisions (domain/model_call.py)
        Open, Delta ─▶ the face's writer (faces.writer): a step and a message and best-effort deltas for
                       a thread's run (turn_steps.StepWriter); output items and stored deltas for a
                       Response (response_writer.py)
    server-side tool calls ─▶ hosted.run_calls ─▶ writer.complete_hosted: the run goes on (play → True)
    end ─▶ ModelCall.ending ─▶ writer.end_leg: completed | incomplete | requires_action | cancelled | failed

Every write is fenced by the lease owner token, so a worker that lost its lease (it stalled, or the run was
cancelled or expired) cannot commit anything; the process's LeaseKeeper says when that happened.
"""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.lifecycle import RunStatus
from orchestrator.domain.model import ModelError, ModelProvider, ModelRequest
from orchestrator.domain.model_call import ModelCall, failed
from orchestrator.engine import faces, hosted, model_reader


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
        self.call = ModelCall(request.prompt_tokens, hosted=frozenset(request.hosted))
        # Taken over in progress (`resumed`): a dead worker's step or item may be waiting to be redone.
        self.writer = faces.writer(ctx, run, owner, resumed=resumed)

    def play(self) -> bool:
        """Play the call; True when it ran server-side tools and the run goes on with another call."""
        executed = hosted.Executed()
        with self.ctx.leases.hold(self.run.id, self.owner) as hold:
            try:
                writer = self.writer
                for chunk in model_reader.read(self.model, self.request, hold, writer.due, writer.flush):
                    for effect in self.call.take(chunk):
                        self.writer.apply(effect, self.call)
                if self.call.hosted_calls and not hold.cancelled.is_set() and not hold.lost.is_set():
                    calls, sources = self.call.hosted_calls, self.writer.sources()
                    executed = hosted.run_calls(self.ctx, self.run, self.writer.turn, calls, hold, sources)
            except (ModelError, hosted.HostedToolFailed) as error:
                self.writer.end_leg(self.call, failed(error.code, error.message))
                return False
            self.writer.executed(executed)
        if hold.lost.is_set():
            raise StaleWrite(self.run.id)
        ending = self.call.ending(cancelled=hold.cancelled.is_set())
        if ending.target is RunStatus.IN_PROGRESS:
            self.writer.complete_hosted(self.call, executed.stored, executed.failure)
            return True
        self.writer.end_leg(self.call, ending, executed.stored)
        return False
