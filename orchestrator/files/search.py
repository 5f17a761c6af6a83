"""Searching vector stores: hybrid (lexical always, semantic where the store has an embedding model),
fused into 0–1 scores (retrieval/fusion.py). The `/vector_stores/{id}/search` endpoint and the run
engine's file_search both come here.

For the engine:

    search(ctx, tenant_id, vector_store_ids, query, *, max_num_results, ranking_options=None, filters=None)
        -> list[SearchResult]        best first; only completed files; expired stores are skipped
    readiness(ctx, tenant_id, vector_store_ids) -> Readiness
        whether the stores can be searched now: ingesting (wait), expired (fail the run), or missing
    attributes(ctx, vector_store_ids, file_ids) -> {file id: attributes}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import fulltext, stores
from orchestrator.db.retrieval_models import Chunk, ChunkSet, File, VectorStore, VectorStoreFile
from orchestrator.domain.retrieval import StoreFileStatus, StoreStatus, store_status
from orchestrator.files import rerank, rewrite, vector_index, vector_stores
from orchestrator.files.retrieval import filters as attribute_filters
from orchestrator.files.retrieval.fusion import best_of, fuse
from orchestrator.providers.embeddings import EmbeddingError, embedder_for, offload
from orchestrator.schemas.vector_stores import SearchVectorStore

log = logging.getLogger(__name__)

# Each list (lexical, semantic) offers this many candidates per wanted result, at least MIN_CANDIDATES.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 50
# Activity is recorded at most this often per store (expiry counts in days).
TOUCH_EVERY_SECONDS = 60


@dataclass(frozen=True)
class SearchResult:
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any]
    vector_store_id: str
    chunk_id: int


@dataclass(frozen=True)
class Readiness:
    """`ready`: every store exists, none expired and none still ingesting a file."""

    in_progress: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not (self.in_progress or self.expired or self.missing)


@dataclass(frozen=True)
class _Source:
    """A completed store file seen by one search: where a chunk set's hits come from."""

    vector_store_id: str
    file_id: str
    filename: str
    attributes: dict[str, Any]
    embedding_model: str


def search(
    ctx: Context,
    tenant_id: str,
    vector_store_ids: Sequence[str],
    query: str | Sequence[str],
    *,
    max_num_results: int = 20,
    ranking_options: dict[str, Any] | None = None,
    filters: dict[str, Any] | None = None,
) -> list[SearchResult]:
    """The best chunks of the tenant's stores for `query` (several queries: each chunk's best score),
    at most `max_num_results`, none below `ranking_options["score_threshold"]`. Unknown or another
    tenant's store ids find nothing; the caller checks them first (`readiness`)."""
    queries = [text for text in ([query] if isinstance(query, str) else list(query)) if text.strip()]
    threshold = float((ranking_options or {}).get("score_threshold") or 0.0)
    with ctx.uow() as uow:
        models = {
            store.embedding_model
            for store in _live_stores(uow.session, tenant_id, vector_store_ids, ctx.timestamp())
        }
    # Queries are embedded before the search's transaction: on SQLite a transaction holds the write lock.
    vectors = _embed_queries(ctx, models - {""}, queries)
    with ctx.uow() as uow:
        session, now = uow.session, ctx.timestamp()
        live = _live_stores(session, tenant_id, vector_store_ids, now)
        sources = _sources(session, [store.id for store in live], filters)
        limit = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * max_num_results)
        scores = best_of([_score(ctx, session, sources, text, vectors, limit) for text in queries])
        # Reranking rescores the best fused candidates; the threshold then applies to its scores.
        reranking, floor = rerank.wanted(ranking_options), threshold
        keep, threshold = (ctx.settings.rerank_candidates, 0.0) if reranking else (max_num_results, threshold)
        ranked = sorted(
            (item for item in scores.items() if item[1] >= threshold), key=lambda i: (-i[1], i[0])
        )
        results = _results(session, sources, ranked[: max(keep, max_num_results)])
        _touch(session, live, now)
        uow.commit()
    # After the transaction: a reranker may be a model call (on SQLite a transaction holds the write lock).
    return rerank.reorder(ctx, queries, results, threshold=floor)[:max_num_results] if reranking else results


def _embed_queries(ctx: Context, models: set[str], queries: list[str]) -> dict[tuple[str, str], Any]:
    """(model, query) → unit vector, for the models that can be used now (others: lexical only)."""
    vectors = {}
    for model in models:
        try:
            embedded = embedder_for(model, ctx.settings).embed(queries) if queries else []
        except EmbeddingError as error:
            log.warning("semantic search skipped, the embedding model %s is unavailable: %s", model, error)
            continue
        vectors.update(((model, text), vector) for text, vector in zip(queries, embedded, strict=True))
    return vectors


def readiness(ctx: Context, tenant_id: str, vector_store_ids: Sequence[str]) -> Readiness:
    in_progress, expired, missing = [], [], []
    with ctx.uow() as uow:
        now = ctx.timestamp()
        for store_id in vector_store_ids:
            store = uow.session.scalar(
                select(VectorStore).where(VectorStore.id == store_id, VectorStore.tenant_id == tenant_id)
            )
            if store is None:
                missing.append(store_id)
                continue
            file_counts, _usage = vector_stores.tally(uow.session, store_id)
            status = store_status(file_counts, store.expires_at, now)
            if status is StoreStatus.EXPIRED:
                expired.append(store_id)
            elif status is StoreStatus.IN_PROGRESS:
                in_progress.append(store_id)
    return Readiness(in_progress, expired, missing)


def search_page(ctx: Context, tenant_id: str, store_id: str, body: SearchVectorStore) -> dict:
    """The `/vector_stores/{id}/search` endpoint's page."""
    with ctx.uow() as uow:
        stores.load(uow.session, tenant_id, store_id)
    queries = [body.query] if isinstance(body.query, str) else body.query
    if body.rewrite_query:
        queries = [rewrite.rewrite(ctx, text) for text in queries]
    ranking = body.ranking_options.model_dump() if body.ranking_options else None
    found = search(
        ctx,
        tenant_id,
        [store_id],
        queries,
        max_num_results=body.max_num_results or 10,
        ranking_options=ranking,
        filters=body.filters.model_dump() if body.filters else None,
    )
    data = [
        {
            "file_id": hit.file_id,
            "filename": hit.filename,
            "score": round(hit.score, 6),
            "attributes": hit.attributes,
            "content": [{"type": "text", "text": hit.text}],
        }
        for hit in found
    ]
    page = "vector_store.search_results.page"
    return {"object": page, "search_query": queries, "data": data, "has_more": False, "next_page": None}


def _live_stores(session: Session, tenant_id: str, store_ids: Sequence[str], now: int) -> list[VectorStore]:
    if not store_ids:
        return []
    rows = session.scalars(
        select(VectorStore).where(VectorStore.id.in_(list(store_ids)), VectorStore.tenant_id == tenant_id)
    ).all()
    return [row for row in rows if row.expires_at is None or row.expires_at > now]


def attributes(ctx: Context, vector_store_ids: Sequence[str], file_ids: Sequence[str]) -> dict[str, dict]:
    """File id → its attributes in the first of the stores that holds it: what a search result of the
    Responses API shows (the run engine's stored results keep only the Assistants shape)."""
    if not vector_store_ids or not file_ids:
        return {}
    with ctx.uow() as uow:
        rows = uow.session.execute(
            select(VectorStoreFile.id, VectorStoreFile.vector_store_id, VectorStoreFile.attributes).where(
                VectorStoreFile.vector_store_id.in_(list(vector_store_ids)),
                VectorStoreFile.id.in_(list(set(file_ids))),
            )
        ).all()
    order = {store_id: rank for rank, store_id in enumerate(vector_store_ids)}
    found: dict[str, dict] = {}
    for file_id, _store_id, attrs in sorted(rows, key=lambda row: order.get(row[1], len(order))):
        found.setdefault(file_id, attrs or {})
    return found


def _sources(session: Session, store_ids: list[str], filters: dict | None) -> dict[str, _Source]:
    """Chunk set id → where its hits come from: the stores' completed files that pass the filters."""
    if not store_ids:
        return {}
    rows = session.execute(
        select(VectorStoreFile, File.filename, VectorStore.embedding_model)
        .join(File, File.id == VectorStoreFile.id)
        .join(VectorStore, VectorStore.id == VectorStoreFile.vector_store_id)
        .where(
            VectorStoreFile.vector_store_id.in_(store_ids),
            VectorStoreFile.status == StoreFileStatus.COMPLETED.value,
        )
        .order_by(VectorStoreFile.vector_store_id, VectorStoreFile.created_us)
    ).all()
    sources: dict[str, _Source] = {}
    for row, filename, model in rows:
        if filters is not None and not attribute_filters.matches(filters, row.attributes or {}):
            continue
        sources.setdefault(
            row.chunk_set_id, _Source(row.vector_store_id, row.id, filename, row.attributes, model)
        )
    return sources


def _score(
    ctx: Context, session: Session, sources: dict[str, _Source], query: str, vectors: dict, limit: int
) -> dict:
    if not sources:
        return {}
    lists = [[(hit.chunk_id, hit.coverage) for hit in fulltext.search(session, sources, query, limit)]]
    by_model: dict[str, list[str]] = {}
    for chunk_set_id, source in sources.items():
        if (source.embedding_model, query) in vectors:
            by_model.setdefault(source.embedding_model, []).append(chunk_set_id)
    for model, chunk_set_ids in by_model.items():
        lists.append(_semantic(ctx, session, chunk_set_ids, vectors[(model, query)], limit))
    return fuse(lists)


def _semantic(ctx: Context, session: Session, chunk_set_ids: list[str], vector, limit: int) -> list:
    """The nearest chunks by cosine similarity (exact search over the cached matrices)."""
    completed = session.scalars(
        select(ChunkSet.id).where(ChunkSet.id.in_(chunk_set_ids), ChunkSet.dimensions == len(vector))
    ).all()
    cache = vector_index.cache(ctx.settings.vector_cache_mb)
    matrices = [cache.get(session, chunk_set_id) for chunk_set_id in completed]
    # numpy releases the GIL: a big store's product runs on an OS thread, off a gevent process's loop.
    return offload(lambda: vector_index.nearest(matrices, vector, limit))


def _results(session: Session, sources: dict[str, _Source], ranked: list[tuple[int, float]]) -> list:
    if not ranked:
        return []
    chunks = {
        row.id: row
        for row in session.execute(
            select(Chunk.id, Chunk.chunk_set_id, Chunk.text).where(Chunk.id.in_([cid for cid, _ in ranked]))
        )
    }
    results = []
    for chunk_id, score in ranked:
        chunk = chunks.get(chunk_id)
        if chunk is None:
            continue
        source = sources[chunk.chunk_set_id]
        results.append(
            SearchResult(
                file_id=source.file_id,
                filename=source.filename,
                score=min(score, 1.0),
                text=chunk.text,
                attributes=source.attributes or {},
                vector_store_id=source.vector_store_id,
                chunk_id=chunk_id,
            )
        )
    return results


def _touch(session: Session, live: list[VectorStore], now: int) -> None:
    due = [store for store in live if now - store.last_active_at >= TOUCH_EVERY_SECONDS]
    stores.touch(session, due, now)
