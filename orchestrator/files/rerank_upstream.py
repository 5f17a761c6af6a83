"""Rerankers behind a models-file route (docs/models.md, "Rerankers"): `POST {base_url}/rerank`.

    kind: rerank       Cohere, Jina, vLLM (and others that copied Cohere's API):
                       {"model", "query", "documents": [...], "top_n"}
                       -> {"results": [{"index", "relevance_score"}, ...]}
    kind: tei-rerank   text-embeddings-inference: {"query", "texts": [...], "truncate": true}
                       -> [{"index", "score"}, ...]

A text the answer leaves out scores 0. Scores outside 0–1 (raw logits) are squashed by the logistic
function, all of the answer's alike, so its order stands.
"""

from __future__ import annotations

import math
from typing import Any

import httpx2

from orchestrator.providers import model_routes as routes
from orchestrator.settings import Settings


class RerankError(Exception):
    """The reranker cannot be used (not installed, misconfigured, or its endpoint failed); files/rerank.py
    raises it too, and logs it where it keeps the fused order."""


def scores(model: str, settings: Settings, query: str, texts: list[str]) -> list[float]:
    target = _target(model, settings)
    tei = target.kind == "tei-rerank"
    body: dict[str, Any] = (
        {"query": query, "texts": texts, "truncate": True}
        if tei
        else {"model": target.model, "query": query, "documents": texts, "top_n": len(texts)}
    )
    headers = {}
    if target.endpoint.api_key != routes.NO_KEY:
        headers["Authorization"] = f"Bearer {target.endpoint.api_key}"
    url = f"{(target.endpoint.base_url or '').rstrip('/')}/rerank"
    try:
        response = httpx2.post(url, json=body, headers=headers, timeout=_timeout(target.endpoint))
        response.raise_for_status()
        answer = response.json()
    except (httpx2.HTTPError, ValueError) as error:
        raise RerankError(f"The reranker at {url} failed: {error}") from error
    return _by_index(answer if tei else (answer or {}).get("results"), len(texts), tei)


def _target(model: str, settings: Settings) -> routes.Target:
    try:
        target = routes.resolve(model, settings)
    except routes.RoutesError as error:
        raise RerankError(str(error)) from error
    if target.kind not in ("rerank", "tei-rerank"):
        raise RerankError(
            f"The rerank model {model!r} needs a models-file route of kind rerank or tei-rerank "
            f"({target.route} is {target.kind})."
        )
    return target


def _timeout(endpoint: routes.Endpoint) -> httpx2.Timeout:
    return httpx2.Timeout(endpoint.timeout_seconds, connect=endpoint.connect_timeout_seconds)


def _by_index(results: Any, count: int, tei: bool) -> list[float]:
    if not isinstance(results, list):
        raise RerankError(f"The reranker answered without a list of results: {str(results)[:200]}")
    found = [0.0] * count
    key = "score" if tei else "relevance_score"
    try:
        raw = {int(item["index"]): float(item[key]) for item in results}
    except (KeyError, TypeError, ValueError) as error:
        raise RerankError(f"The reranker's results lack index or {key}: {error}") from error
    squash = any(not 0.0 <= value <= 1.0 for value in raw.values())
    for index, value in raw.items():
        if 0 <= index < count:
            found[index] = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, value)))) if squash else value
    return found
