"""Exact nearest-neighbour search over a chunk set's vectors, with the matrices cached in memory.

No pgvector here: a completed chunk set's vectors never change, so each process loads them once (one
query, the rows in `seq` order) into a unit-length float32 matrix and keeps it, least recently used first
out, within `vector_cache_mb`. The sets a search reads together are stacked into one matrix, kept too and
keyed by exactly those sets (a store that gained or lost a file is stacked again, from the cached parts).
A query is then one matrix-vector product and a partial sort: exact, and for 100,000 chunks of 384
dimensions a few milliseconds of numpy. The cache holds nothing but what the database holds, so losing
it costs only the next load.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import Chunk
from orchestrator.files import budget_cache
from orchestrator.files.budget_cache import BudgetCache, PerProcess, parts_key


@dataclass(frozen=True)
class Matrix:
    ids: np.ndarray  # chunk ids, int64
    vectors: np.ndarray  # (len(ids), dimensions) float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.vectors.nbytes


@dataclass(frozen=True)
class Stacked:
    """Chunk sets searched together: their matrices one under the other, and which set each row is of."""

    matrix: Matrix
    part_of: np.ndarray  # int32 per row: the position of its chunk set in `parts`
    parts: tuple[str, ...]
    position: dict[str, int] = field(default_factory=dict)

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
        """`nearest` for several queries (rows) in one matrix product: the matrix, the costly part to read
        from memory, is read once for them all."""
        ids, vectors = self.matrix.ids, self.matrix.vectors
        if not len(ids) or vectors.shape[1] != queries.shape[1] or limit <= 0:
            return [[] for _ in queries]
        every = vectors @ queries.T.astype(np.float32)
        if allowed is not None:
            every[~allowed[self.part_of]] = -np.inf
        found = []
        for scores in every.T:
            top = (
                np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
            )
            top = top[np.isfinite(scores[top])]
            top = top[np.lexsort((ids[top], -scores[top]))]
            found.append([(int(ids[i]), float(scores[i])) for i in top])
        return found

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes + self.part_of.nbytes + 100 * len(self.parts)


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
            built = _stack([self.get(session, chunk_set_id) for chunk_set_id in parts], parts)
            return built, built.nbytes

        return self._memory.built(key, build)


def _stack(matrices: list[Matrix], parts: tuple[str, ...]) -> Stacked:
    dimensions = {matrix.vectors.shape[1] for matrix in matrices if len(matrix.ids)}
    kept = [(i, matrix) for i, matrix in enumerate(matrices) if len(matrix.ids)]
    if len(dimensions) != 1:  # nothing embedded (or, never expected, mixed dimensions: searched apart)
        empty = Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        return Stacked(empty, np.zeros(0, np.int32), parts, {key: i for i, key in enumerate(parts)})
    ids = np.concatenate([matrix.ids for _, matrix in kept])
    vectors = np.concatenate([matrix.vectors for _, matrix in kept])
    part_of = np.repeat(np.array([i for i, _ in kept], dtype=np.int32), [len(m.ids) for _, m in kept])
    return Stacked(Matrix(ids, vectors), part_of, parts, {key: i for i, key in enumerate(parts)})


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
