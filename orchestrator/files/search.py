"""Searching vector stores: hybrid (lexical always, semantic where the store has an embedding model),
fused into 0–1 scores (retrieval/fusion.py). The `/vector_stores/{id}/search` endpoint and the run
engine's file_search both come here.

A search reads the stores' completed chunk-set ids (one light query), takes their lexical index and
stacked vectors from this process's caches (lexical_index.py, vector_index.py: rebuilt only when that set
changed), embeds all the queries in one batch per model beside the reads and the lexical scoring (on
another OS thread: the model releases the GIL), scores the vectors of all the queries in one pass, and
reads files, names and attributes only for the hits. Filters read the stores' attributes and become a mask
over the chunk sets. Its cost thus follows the hits and the query terms'
postings, not the number of files or the rest of the database.

For the engine:

    search(ctx, tenant_id, vector_store_ids, query, *, max_num_results, ranking_options=None, filters=None)
        -> list[SearchResult]        best first; only completed files; expired stores are skipped
    readiness(ctx, tenant_id, vector_store_ids) -> Readiness
        whether the stores can be searched now: ingesting (wait), expired (fail the run), or missing
    attributes(ctx, vector_store_ids, file_ids) -> {file id: attributes}
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

import numpy as np
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import stores
from orchestrator.db.connection import on_postgres
from orchestrator.db.retrieval_models import Chunk, ChunkSet, File, VectorStore, VectorStoreFile
from orchestrator.domain.retrieval import StoreFileStatus, StoreStatus, store_status
from orchestrator.files import lexical_index, rerank, rewrite, vector_index, vector_stores
from orchestrator.files.retrieval import filters as attribute_filters
from orchestrator.files.retrieval import terms
from orchestrator.files.retrieval.fusion import best_of, fuse, lexical_relevance
from orchestrator.providers.embeddings import EmbeddingError, embedder_for, offload
from orchestrator.schemas.vector_stores import SearchVectorStore

T = TypeVar("T")
log = logging.getLogger(__name__)

# Each list (lexical, semantic) offers this many candidates per wanted result, at least MIN_CANDIDATES.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 50
# Searches embedding (and scoring) their queries beside their reads at once, outside gevent (each pool's).
SEARCH_THREADS = 8
# From this many chunks in a store's index, a call's BM25 lists run on a thread each (see _lexical_lists).
THREADED_LEXICAL_CHUNKS = 250_000
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
    """A completed store file a hit comes from."""

    vector_store_id: str
    file_id: str
    filename: str
    attributes: dict[str, Any]


class _Member(NamedTuple):
    """A completed chunk set of a searched store (a tuple: a store of 10,000 files makes 10,000 per search,
    and a frozen dataclass's construction cost 5 µs each of a 1,000,000-chunk store's search)."""

    vector_store_id: str
    chunk_set_id: str
    embedding_model: str
    dimensions: int | None


@dataclass
class _Indexes:
    """What one search's queries are scored against, in memory; `allowed`: the filters' masks."""

    lexical: lexical_index.StoreIndex
    lexical_allowed: np.ndarray | None
    semantic: dict[str, tuple[vector_index.Stacked, np.ndarray | None]] = field(default_factory=dict)


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
    # Reranking rescores the best fused candidates; the threshold then applies to its scores.
    reranking, floor = rerank.wanted(ranking_options), threshold
    keep, threshold = (ctx.settings.rerank_candidates, 0.0) if reranking else (max_num_results, threshold)
    limit = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * max_num_results)
    lexical: list[list] = []
    with ctx.uow() as uow:
        session, now = uow.session, ctx.timestamp()
        live = _live_stores(session, tenant_id, vector_store_ids, now)
        # The queries are embedded beside the reads and the lexical lists below (the model computes on
        # another OS thread), and waited for only after this transaction: on SQLite a transaction holds
        # the write lock, and an embedding model may be a remote call.
        models = {store.embedding_model for store in live} - {""}
        embedded = _beside(partial(_embed_queries, ctx, models, queries))
        semantic: Callable[[], list[list[list]]] = list
        store_ids = [store.id for store in live]
        members = _members(session, live)
        if members and queries:
            indexes = _indexes(ctx, session, members, store_ids, filters)
            # The vectors are scored as soon as they are embedded, beside the lexical lists (faiss and numpy
            # release the GIL): the call waits for the longer of the two, not their sum.
            semantic = _beside(lambda: _semantic_lists(indexes, queries, embedded(), limit), after=True)
            lexical = _lexical_lists(indexes, queries, limit)
        _touch(session, live, now)
        uow.commit()
    embedded()  # waited for even when nothing is searched: no call leaves its work running behind it
    results = []
    if lexical:
        fused = best_of(_fuse(lexical, semantic()))
        ranked = sorted((item for item in fused.items() if item[1] >= threshold), key=lambda i: (-i[1], i[0]))
        with ctx.uow() as uow:
            results = _results(uow.session, store_ids, ranked[: max(keep, max_num_results)], filters)
            if reranking:
                rerank.remember_stored(ctx, uow.session, results)
            uow.commit()
    # After the transactions: a reranker may be a model call.
    return rerank.reorder(ctx, queries, results, threshold=floor)[:max_num_results] if reranking else results


def _embed_queries(ctx: Context, models: set[str], queries: list[str]) -> dict[tuple[str, str], Any]:
    """(model, query) → unit vector, for the models that can be used now (others: lexical only)."""
    vectors = {}
    for model in models:
        try:
            embedded = embedder_for(model, ctx.settings).embed_queries(queries) if queries else []
        except EmbeddingError as error:
            log.warning("semantic search skipped, the embedding model %s is unavailable: %s", model, error)
            continue
        vectors.update(((model, text), vector) for text, vector in zip(queries, embedded, strict=True))
    return vectors


def readiness(ctx: Context, tenant_id: str, vector_store_ids: Sequence[str]) -> Readiness:
    in_progress, expired, missing = [], [], []
    with ctx.uow() as uow:
        now = ctx.timestamp()
        found = {
            store.id: store
            for store in uow.session.scalars(
                select(VectorStore).where(
                    VectorStore.id.in_(list(vector_store_ids)), VectorStore.tenant_id == tenant_id
                )
            )
        }
        counted = vector_stores.tallies(uow.session, list(found))
        for store_id in vector_store_ids:
            store = found.get(store_id)
            if store is None:
                missing.append(store_id)
                continue
            file_counts, _usage = counted[store_id]
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
    order = {store_id: rank for rank, store_id in enumerate(store_ids)}
    # In the caller's order: a file in two stores is shown as the first one's.
    return sorted(
        (row for row in rows if row.expires_at is None or row.expires_at > now), key=lambda row: order[row.id]
    )


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


def _members(session: Session, live: list[VectorStore]) -> list[_Member]:
    """The stores' completed chunk sets: ids and dimensions only, whatever the number of files."""
    if not live:
        return []
    models = {store.id: store.embedding_model for store in live}
    completed = (
        VectorStoreFile.vector_store_id.in_(list(models)),
        VectorStoreFile.status == StoreFileStatus.COMPLETED.value,
    )
    joined = select(VectorStoreFile.vector_store_id).join(
        ChunkSet, ChunkSet.id == VectorStoreFile.chunk_set_id
    )
    if on_postgres(session):
        # One row per store, "id:dimensions,…": a store of 10,000 files took 20 ms at the median and 50 ms on
        # average (its rows' objects) to read row by row, 7 ms so, of a search that otherwise takes ~10.
        pairs = VectorStoreFile.chunk_set_id.concat(":").concat(
            func.coalesce(cast(ChunkSet.dimensions, Text), "")
        )
        rows = session.execute(
            joined.add_columns(func.string_agg(pairs, ","))
            .where(*completed)
            .group_by(VectorStoreFile.vector_store_id)
        ).all()
        return [
            _Member(store_id, chunk_set_id, models[store_id], int(dims) if dims else None)
            for store_id, listed in rows
            for chunk_set_id, _, dims in (pair.partition(":") for pair in listed.split(","))
        ]
    rows = session.execute(
        joined.add_columns(VectorStoreFile.chunk_set_id, ChunkSet.dimensions).where(*completed)
    ).all()
    return [_Member(store_id, chunk_set_id, models[store_id], dims) for store_id, chunk_set_id, dims in rows]


def _indexes(
    ctx: Context, session: Session, members: list[_Member], store_ids: list[str], filters: dict | None
) -> _Indexes:
    settings = ctx.settings
    lexical = lexical_index.cache(settings.lexical_cache_mb).index(session, {m.chunk_set_id for m in members})
    allowed = _allowed(session, store_ids, filters) if filters is not None else None
    indexes = _Indexes(lexical, None if allowed is None else lexical.mask(allowed))
    for model in {member.embedding_model for member in members} - {""}:
        sets = {m.chunk_set_id for m in members if m.embedding_model == model and m.dimensions}
        stacked = vector_index.cache(settings.vector_cache_mb).stacked(session, sets)
        indexes.semantic[model] = (stacked, None if allowed is None else stacked.mask(allowed))
    return indexes


def _allowed(session: Session, store_ids: list[str], filters: dict) -> set[str]:
    """The chunk sets of the stores' completed files whose attributes pass the filters."""
    rows = session.execute(
        select(VectorStoreFile.chunk_set_id, VectorStoreFile.attributes).where(
            VectorStoreFile.vector_store_id.in_(store_ids),
            VectorStoreFile.status == StoreFileStatus.COMPLETED.value,
        )
    ).all()
    return {chunk_set_id for chunk_set_id, attrs in rows if attribute_filters.matches(filters, attrs or {})}


def _lexical_lists(indexes: _Indexes, queries: list[str], limit: int) -> list[list[tuple[int, float]]]:
    """Each query's BM25 candidates: one after the other on one OS thread (off a gevent process's loop), or
    on a thread each for a big store. On a small one a thread per query measured slower on two busy cores:
    five queries' lists at 100,000 chunks took 5.4 ms and 5.1 ms of CPU on threads, 4.1 ms and 3.6 ms so
    (their Python parts take turns on the GIL, and each thread's start and hand-offs cost CPU). At a million
    chunks a query's list takes 8–26 ms, mostly in numpy, which releases the GIL: five took 64 ms on threads
    against 100 ms one after the other (quiet machine, in-process)."""

    def score(text: str) -> list[tuple[int, float]]:
        found = indexes.lexical.index.search(terms.query_terms(text), limit, indexes.lexical_allowed)
        return [(hit.chunk_id, lexical_relevance(hit.relevance)) for hit in found]

    if len(queries) > 1 and len(indexes.lexical.index.chunk_ids) >= THREADED_LEXICAL_CHUNKS:
        return _concurrently([partial(score, text) for text in queries])
    return offload(lambda: [score(text) for text in queries])


def _semantic_lists(indexes: _Indexes, queries: list[str], vectors: dict, limit: int) -> list[list[list]]:
    """Each query's nearest chunks per embedding model: all the queries in one pass per model (reading a
    big matrix once costs what one query's product costs)."""
    semantic: dict[str, list[list]] = {text: [] for text in queries}
    for model, (stacked, allowed) in indexes.semantic.items():
        wanted = [text for text in queries if (model, text) in vectors]
        if not wanted:
            continue
        matrix = np.stack([vectors[(model, text)] for text in wanted])
        nearest = partial(stacked.nearest_many, matrix, limit, allowed)
        for text, found in zip(wanted, offload(nearest), strict=True):
            semantic[text].append(found)
    return [semantic[text] for text in queries]


def _fuse(lexical: list[list], semantic: list[list[list]]) -> list[dict]:
    """Each query's fused scores."""
    return [
        fuse([lexical_list, *semantic_lists])
        for lexical_list, semantic_lists in zip(lexical, semantic, strict=True)
    ]


def _beside(work: Callable[[], T], *, after: bool = False) -> Callable[[], T]:
    """Start `work` beside the caller and return a function that waits for its result: a greenlet in a
    gevent process (its CPU part goes to an OS thread through `offload`), else a thread of a pool. `after`:
    work that waits for other work started beside (it gets a pool of its own, so that a full pool of
    waiting work never leaves no thread to what it waits for)."""
    if _gevent_patched():
        import gevent

        started = gevent.spawn(work)
        gevent.sleep(0)  # let it reach its thread before the caller goes on
        return started.get
    return _threads(1 if after else 0).submit(work).result


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("threading")


def _concurrently(work: list[Callable[[], T]]) -> list[T]:
    """Run each on an OS thread, off a gevent process's loop: the gevent hub's pool, else this module's."""
    if _gevent_patched():
        from gevent import get_hub

        pool = get_hub().threadpool
        return [job.get() for job in [pool.spawn(each) for each in work]]
    return list(_threads(0).map(lambda each: each(), work))


_pools: list[ThreadPoolExecutor | None] = [None, None]
_pool_lock = threading.Lock()


def _threads(which: int) -> ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools[which]
        if pool is None:
            pool = _pools[which] = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="search")
        return pool


def _forget_threads() -> None:
    _pools[:] = [None, None]  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_threads)


def _results(
    session: Session, store_ids: list[str], ranked: list[tuple[int, float]], filters: dict | None
) -> list[SearchResult]:
    """The hits with their text, file, name and attributes: rows read for these chunks only."""
    if not ranked:
        return []
    chunks = {
        row.id: row
        for row in session.execute(
            select(Chunk.id, Chunk.chunk_set_id, Chunk.text).where(Chunk.id.in_([cid for cid, _ in ranked]))
        )
    }
    sources = _sources(session, store_ids, {row.chunk_set_id for row in chunks.values()}, filters)
    results = []
    for chunk_id, score in ranked:
        chunk = chunks.get(chunk_id)
        source = sources.get(chunk.chunk_set_id) if chunk is not None else None
        if source is None:  # removed from the store since the search began
            continue
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


def _sources(
    session: Session, store_ids: list[str], chunk_set_ids: set[str], filters: dict | None
) -> dict[str, _Source]:
    """Chunk set id → the store file its hits are shown as (the first store searched that holds it).
    The filters are matched again here, on the hits' files only: a chunk set allowed by one store's file
    is shown as that file, not as another store's file of the same content whose attributes fail them, and
    attributes changed since the search's first transaction count."""
    rows = session.execute(
        select(
            VectorStoreFile.vector_store_id,
            VectorStoreFile.id,
            VectorStoreFile.chunk_set_id,
            VectorStoreFile.attributes,
            File.filename,
        )
        .join(File, File.id == VectorStoreFile.id)
        .where(
            VectorStoreFile.vector_store_id.in_(store_ids),
            VectorStoreFile.chunk_set_id.in_(list(chunk_set_ids)),
            VectorStoreFile.status == StoreFileStatus.COMPLETED.value,
        )
    ).all()
    order = {store_id: rank for rank, store_id in enumerate(store_ids)}
    sources: dict[str, _Source] = {}
    for store_id, file_id, chunk_set_id, attrs, filename in sorted(rows, key=lambda row: order[row[0]]):
        if filters is not None and not attribute_filters.matches(filters, attrs or {}):
            continue
        sources.setdefault(chunk_set_id, _Source(store_id, file_id, filename, attrs or {}))
    return sources


def _touch(session: Session, live: list[VectorStore], now: int) -> None:
    due = [store for store in live if now - store.last_active_at >= TOUCH_EVERY_SECONDS]
    stores.touch(session, due, now)
