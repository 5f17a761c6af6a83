"""Exact nearest-neighbour search over a chunk set's vectors, with the matrices cached in memory.

No pgvector here: a completed chunk set's vectors never change, so each process loads them once (one
query, the rows in `seq` order) into a unit-length float32 matrix and keeps it, least recently used first
out, within `vector_cache_mb`. A query is then one matrix-vector product and a partial sort per set: exact,
and for 100,000 chunks of 384 dimensions a few milliseconds of numpy. The cache holds nothing but what
the database holds, so losing it costs only the next load.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import Chunk


@dataclass(frozen=True)
class Matrix:
    ids: np.ndarray  # chunk ids, int64
    vectors: np.ndarray  # (len(ids), dimensions) float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.vectors.nbytes


class VectorCache:
    def __init__(self, budget_bytes: int):
        self._budget = budget_bytes
        self._entries: OrderedDict[str, Matrix] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, session: Session, chunk_set_id: str) -> Matrix:
        with self._lock:
            entry = self._entries.get(chunk_set_id)
            if entry is not None:
                self._entries.move_to_end(chunk_set_id)
                return entry
        entry = load(session, chunk_set_id)
        self._keep(chunk_set_id, entry)
        return entry

    def _keep(self, chunk_set_id: str, entry: Matrix) -> None:
        with self._lock:
            if chunk_set_id in self._entries or entry.nbytes > self._budget:
                return
            self._entries[chunk_set_id] = entry
            self._used += entry.nbytes
            while self._used > self._budget:
                _, dropped = self._entries.popitem(last=False)
                self._used -= dropped.nbytes


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
        top = np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
        found.extend((int(matrix.ids[i]), float(scores[i])) for i in top)
    found.sort(key=lambda item: (-item[1], item[0]))
    return found[:limit]


_caches: dict[int, VectorCache] = {}
_caches_lock = threading.Lock()


def cache(budget_mb: int) -> VectorCache:
    """This process's cache (one per budget, in practice one)."""
    with _caches_lock:
        if budget_mb not in _caches:
            _caches[budget_mb] = VectorCache(budget_mb * 1024 * 1024)
        return _caches[budget_mb]
