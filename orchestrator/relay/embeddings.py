"""Embeddings (POST /v1/embeddings): `local-minilm` (any `local…` name) in-process when the
`local-embeddings` extra is installed; any other model relayed to its route's `/embeddings`.

`encoding_format: base64` (what the SDK asks for unless told otherwise) is each vector's little-endian
float32 bytes in base64; an upstream that answers floats anyway is converted, so the client gets what it
asked for. Not durable work: nothing is written to the database.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from orchestrator.context import Context
from orchestrator.domain.errors import InvalidRequest, NotFound, OrchestratorError
from orchestrator.observability.model_api import Call
from orchestrator.providers import passthrough, tokens
from orchestrator.providers.embeddings import EmbeddingError, embedder_for
from orchestrator.relay.chat import Whole, target_for
from orchestrator.schemas.chat import CreateEmbedding

API = "embeddings"


def embed(ctx: Context, tenant_id: str, body: CreateEmbedding, raw: dict) -> Whole:
    model = body.model
    call = Call(tenant_id, API, model)
    try:
        if model.startswith("local"):
            answer, sent = _local(ctx, model, body), None
        else:
            answer, sent = _relayed(ctx, model, raw)
    except OrchestratorError as error:
        call.end(error.status)
        raise
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    prompt = usage.get("prompt_tokens")
    call.tokens(prompt if isinstance(prompt, int) else 0)
    call.end(200)
    return Whole(sent if sent is not None else json.dumps(answer, separators=(",", ":")).encode())


def _local(ctx: Context, model: str, body: CreateEmbedding) -> dict[str, Any]:
    texts = texts_of(body.input)
    try:
        vectors = embedder_for(model, ctx.settings).embed(texts)
    except EmbeddingError as error:
        raise NotFound(
            f"The model '{model}' is not available: {error}", param="model", code="model_not_found"
        ) from None
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise InvalidRequest(
            f"The model '{model}' makes {vectors.shape[1]}-dimension vectors; 'dimensions' cannot change that.",
            param="dimensions",
            code="unsupported_value",
        )
    base64_wanted = body.encoding_format == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(row) if base64_wanted else row.tolist()}
        for index, row in enumerate(vectors)
    ]
    counted = sum(tokens.count(text) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": counted, "total_tokens": counted},
    }


def texts_of(value: Any) -> list[str]:
    """The input as texts: token arrays are decoded with cl100k_base, the encoding OpenAI's embedding
    models read them with."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [_decoded(value)]
    return [item if isinstance(item, str) else _decoded(item) for item in value]


def _decoded(ids: list[int]) -> str:
    encoding = tokens.chunking_encoding()
    if encoding is None:
        raise InvalidRequest(
            "Token arrays cannot be read here (no cl100k_base encoding is installed); send text.",
            param="input",
            code="unsupported_value",
        )
    try:
        return encoding.decode(ids)
    except (KeyError, ValueError, OverflowError):
        raise InvalidRequest(
            "Invalid 'input': a token id is not in the cl100k_base vocabulary.",
            param="input",
            code="invalid_value",
        ) from None


def _relayed(ctx: Context, model: str, raw: dict) -> tuple[dict[str, Any], bytes | None]:
    """The upstream's answer, and its bytes when they can go to the client unchanged."""
    target = target_for(model, ctx.settings)
    response = passthrough.send(target, passthrough.EMBEDDINGS, {**raw, "model": target.model}, stream=False)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise passthrough.malformed(target)
    converted = False
    if raw.get("encoding_format") == "base64":
        for item in answer.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("embedding"), list):
                try:
                    item["embedding"] = _encoded(np.asarray(item["embedding"], dtype=np.float32))
                except (TypeError, ValueError):
                    raise passthrough.malformed(target) from None
                converted = True
    return answer, None if converted else response.content


def _encoded(row: np.ndarray) -> str:
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
