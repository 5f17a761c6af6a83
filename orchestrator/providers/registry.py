"""Which provider serves a model name: `local…` runs in-process, everything else goes upstream."""

from __future__ import annotations

from orchestrator.domain.model import ModelProvider
from orchestrator.providers.local import LocalModel
from orchestrator.providers.timed import Timed
from orchestrator.settings import Settings


def provider_for(model: str, settings: Settings) -> ModelProvider:
    if model.startswith("local"):
        return Timed(LocalModel(settings.local_model_delay_ms, settings.local_model_first_token_ms), "local")
    from orchestrator.providers.upstream import UpstreamModel

    return Timed(UpstreamModel.for_model(model, settings), "upstream")
