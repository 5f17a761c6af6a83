"""Nearest-neighbour search over the vectors of the chunk sets a search reads, cached in memory.

No pgvector here: a completed chunk set's vectors never change, so each process loads them once (one
query, the rows in `seq` order) into a unit-length float32 matrix and keeps it, least recently used first
out, within `vector_cache_mb`. The sets a search reads together are stacked into one matrix, kept too and
keyed by exactly those sets (a store that gained or lost a file is stacked again, from the cached parts).

Up to `EXACT_ROWS` rows a search is exact: one matrix product for all of a call's queries and a partial
sort, about a millisecond there. Past it, an exact scan costs ~5 ms per query at 100,000 rows of 384
dimensions and ~70 ms at 1,000,000 on one core, so the stacked matrix also gets a compact code of its
rows (faiss product quantization with 4-bit fast-scan, 1 bit per dimension, 3% of the matrix): a query
scans every row's code, not just a few clusters as an IVF or graph index would, and the `RESCORE_PER_RESULT`
times `limit` best by code are scored exactly from the matrix. Scores are therefore exact; only a row the
code ranked very low can be missed (recall@50 0.99+ on MiniLM vectors at 100,000 and 1,000,000 rows,
docs/performance.md). The code is built in a few seconds at 1,000,000 rows, with the stacked matrix, each
time the store's set of files changes. Where faiss cannot be installed every search is exact. The cache
holds nothing but what the database holds, so losing it costs only the next load.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import Chunk
from orchestrator.files import budget_cache
from orchestrator.files.budget_cache import BudgetCache, PerProcess, parts_key
from orchestrator.providers.embeddings import offload

# Stacks of up to this many rows are searched exactly (a millisecond or so); larger ones through a code and
# exact rescoring. Small stores, and every test's, thus rank exactly as brute force does.
EXACT_ROWS = 20_000
# Candidates per wanted result the code offers for exact rescoring (measured: recall@50 0.995 at 1,000,000
# MiniLM rows with 32, 0.98 with 16).
RESCORE_PER_RESULT = 32
# Rows the code is trained on: enough for 16 centroids per group, and a build that stays a few seconds.
TRAINING_ROWS = 65_536


@dataclass(frozen=True)
class Matrix:
    ids: np.ndarray  # chunk ids, int64
    vectors: np.ndarray  # (len(ids), dimensions) float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.vectors.nbytes


@dataclass(frozen=True)
class Stacked:
    """Chunk sets searched together: their matrices one under the other, and which set each row is of;
    `codes`, past `EXACT_ROWS` rows, the rows' compact code (a faiss index whose labels are row numbers)."""

    matrix: Matrix
    part_of: np.ndarray  # int32 per row: the position of its chunk set in `parts`
    parts: tuple[str, ...]
    position: dict[str, int] = field(default_factory=dict)
    codes: Any = None

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """A boolean per part: the chunk sets in `allowed`."""
        return budget_cache.mask(self.position, len(self.parts), allowed)

    def nearest(
        self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The `limit` closest rows (cosine) to the unit vector `query`, best first; `allowed`: a boolean
        per part."""
        return self.nearest_many(query[None, :], limit, allowed)[0]

    def nearest_many(
        self, queries: np.ndarray, limit: int, allowed: np.ndarray | None = None
    ) -> list[list[tuple[int, float]]]:
        """`nearest` for several queries (rows) in one pass: the matrix (or its code), the costly part to
        read from memory, is read once for them all."""
        vectors = self.matrix.vectors
        if not len(self.matrix.ids) or vectors.shape[1] != queries.shape[1] or limit <= 0:
            return [[] for _ in queries]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kept = None if allowed is None else allowed[self.part_of]
        rows = None if kept is None else np.flatnonzero(kept)
        wanted = self._wanted(limit, len(vectors) if rows is None else len(rows))
        # The allowed rows are copied out and scored when few: up to EXACT_ROWS, or (with a code) fewer than
        # the candidates the code would be asked for. Copying most of a big matrix costs more than scoring
        # it all, and a code asked for many times the allowed rows costs more than scoring them.
        if rows is not None and len(rows) > EXACT_ROWS and (self.codes is None or wanted < len(rows)):
            rows = None
        if self.codes is not None and rows is None:
            rows = self._candidates(queries, wanted, kept)
        return self._best(queries, limit, kept, rows)

    def _wanted(self, limit: int, allowed_rows: int) -> int:
        """Candidates to ask the code for: `RESCORE_PER_RESULT` per result, times as many more as a filter
        leaves out, so about as many allowed ones come back."""
        total = len(self.matrix.ids)
        return min(total, -(-RESCORE_PER_RESULT * limit * total // max(allowed_rows, 1)))

    def _candidates(self, queries: np.ndarray, wanted: int, kept: np.ndarray | None) -> np.ndarray:
        """The rows the code ranks best (`wanted` a query) for any of the queries, allowed ones only."""
        _faiss().omp_set_num_threads(1)  # this thread's: on a busy machine more only spin (measured)
        _, candidates = self.codes.search(queries, wanted)
        rows = np.unique(candidates[candidates >= 0])
        return rows if kept is None else rows[kept[rows]]

    def _best(
        self, queries: np.ndarray, limit: int, kept: np.ndarray | None, rows: np.ndarray | None
    ) -> list[list[tuple[int, float]]]:
        """Each query's best of `rows` (None: of every allowed row), scored exactly in one product."""
        if rows is not None:
            every = self.matrix.vectors[rows] @ queries.T
        else:
            every = self.matrix.vectors @ queries.T
            if kept is not None:
                every[~kept] = -np.inf
        found = []
        for scores in every.T:
            top = (
                np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
            )
            top = top[np.isfinite(scores[top])]
            found.append(self._ranked(top if rows is None else rows[top], scores[top]))
        return found

    def _ranked(self, rows: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
        """(chunk id, score), best first, ties by id: the same order whichever way the rows were found."""
        ids = self.matrix.ids[rows]
        order = np.lexsort((ids, -scores))
        return [(int(ids[i]), float(scores[i])) for i in order]

    @property
    def nbytes(self) -> int:
        coded = 0 if self.codes is None else self.codes.ntotal2 * self.codes.M2 // 2
        return self.matrix.nbytes + self.part_of.nbytes + 100 * len(self.parts) + coded


class VectorCache:
    def __init__(self, budget_bytes: int):
        self._memory = BudgetCache(budget_bytes)

    def get(self, session: Session, chunk_set_id: str) -> Matrix:
        entry = self._memory.get(("part", chunk_set_id))
        if entry is None:
            entry = load(session, chunk_set_id)
            self._memory.put(("part", chunk_set_id), entry, entry.nbytes)
        return entry

    def stacked(self, session: Session, chunk_set_ids: Collection[str]) -> Stacked:
        parts, key = parts_key("stacked", chunk_set_ids)

        def build() -> tuple[Stacked, int]:
            matrices = [self.get(session, chunk_set_id) for chunk_set_id in parts]
            if sum(len(matrix.ids) for matrix in matrices) > EXACT_ROWS:
                _faiss()  # imported here, not on the thread pool (see embeddings.LocalEmbedder._model)
            # Seconds of CPU for a big store: on an OS thread, so a gevent api serves other requests.
            built = offload(lambda: stack(matrices, parts))
            return built, built.nbytes

        return self._memory.built(key, build)


def stack(matrices: list[Matrix], parts: tuple[str, ...], exact_rows: int | None = None) -> Stacked:
    """The chunk sets `parts` (their `matrices`, in the same order) searched as one; with a code past
    `exact_rows` rows (default `EXACT_ROWS`)."""
    position = {key: i for i, key in enumerate(parts)}
    dimensions = {matrix.vectors.shape[1] for matrix in matrices if len(matrix.ids)}
    kept = [(i, matrix) for i, matrix in enumerate(matrices) if len(matrix.ids)]
    if len(dimensions) != 1:  # nothing embedded (or, never expected, mixed dimensions: searched apart)
        empty = Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        return Stacked(empty, np.zeros(0, np.int32), parts, position)
    ids = np.concatenate([matrix.ids for _, matrix in kept])
    vectors = np.concatenate([matrix.vectors for _, matrix in kept])
    part_of = np.repeat(np.array([i for i, _ in kept], dtype=np.int32), [len(m.ids) for _, m in kept])
    exact = len(ids) <= (EXACT_ROWS if exact_rows is None else exact_rows)
    return Stacked(Matrix(ids, vectors), part_of, parts, position, None if exact else _codes(vectors))


def _codes(vectors: np.ndarray) -> Any:
    """The rows' product-quantization code for faiss's fast scan (4 bits per group of 4 dimensions), or
    None where faiss is missing. Trained on a fixed sample, so every process builds the same code."""
    faiss = _faiss()
    if faiss is None:
        return None
    faiss.omp_set_num_threads(1)
    dimensions = vectors.shape[1]
    groups = next(m for m in range(max(1, dimensions // 4), 0, -1) if dimensions % m == 0)
    index = faiss.IndexPQFastScan(dimensions, groups, 4, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), TRAINING_ROWS), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    return index


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a dependency, but a platform without its wheel searches exactly
        return None
    return faiss


def load(session: Session, chunk_set_id: str) -> Matrix:
    rows = session.execute(
        select(Chunk.id, Chunk.vector)
        .where(Chunk.chunk_set_id == chunk_set_id, Chunk.vector.is_not(None))
        .order_by(Chunk.seq)
    ).all()
    if not rows:
        return Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    ids = np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32).reshape(len(rows), -1)
    return Matrix(ids, vectors)


def nearest(matrices: Iterable[Matrix], query: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """The `limit` chunks closest to the unit vector `query` (cosine similarity), best first."""
    found: list[tuple[int, float]] = []
    for matrix in matrices:
        if not len(matrix.ids) or matrix.vectors.shape[1] != query.shape[0]:
            continue
        scores = matrix.vectors @ query
        if limit <= 0:
            continue
        top = np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
        found.extend((int(matrix.ids[i]), float(scores[i])) for i in top)
    found.sort(key=lambda item: (-item[1], item[0]))
    return found[:limit]


# This process's cache: `cache(budget_mb)`.
cache = PerProcess(VectorCache)
