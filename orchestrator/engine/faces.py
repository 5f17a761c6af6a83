"""Where a model call tells the engine's faces apart (`run.api`): which writer it writes through and which
prompt it reads. (A move's event and the end of a run's open output are the lifecycle's: lifecycle.py.)
Everything else — leases, fencing, event numbering, dispatch, sweeps, cancel — is the same for every run."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models
from orchestrator.domain.lifecycle import Api
from orchestrator.domain.model_call import Delta, Ending, ModelCall, Open
from orchestrator.engine import hosted, prompt, turn_steps
from orchestrator.engine.response_writer import ResponseWriter
from orchestrator.engine.responses import prompt as response_prompt


class Writer(Protocol):
    """What a model call writes through (engine/turn.py)."""

    turn: int  # the model call's number in the run (file_search's citation markers name it)

    def apply(self, effect: Open | Delta, call: ModelCall) -> None: ...
    def due(self) -> float | None: ...  # seconds until held-back output must be written (None: none)
    def flush(self) -> None: ...
    def sources(self) -> hosted.Sources: ...
    def executed(self, done: hosted.Executed) -> None: ...
    def complete_hosted(
        self, call: ModelCall, done: dict[int, dict], failure: dict | None = None
    ) -> None: ...
    def end_leg(self, call: ModelCall, ending: Ending, done: dict[int, dict] | None = None) -> None: ...


def writer(ctx: Context, run: models.Run, owner: str, *, resumed: bool) -> Writer:
    if run.api is Api.RESPONSES:
        return ResponseWriter(ctx, run, owner, resumed=resumed)
    return turn_steps.StepWriter(ctx, run, owner, resumed=resumed)


def build_prompt(ctx: Context, session: Session, run: models.Run) -> prompt.Prompt:
    if run.api is Api.RESPONSES:
        return response_prompt.build(session, run, ctx.settings)
    return prompt.build(session, run)
