"""The lexical index of the stores a search reads, in each process's memory (BM25: retrieval/bm25.py).

A chunk set's postings are computed once, when its chunks are stored, and kept in its row
(`chunk_sets.postings`, in the same transaction as the chunks); a set stored before postings existed gets
them from its chunks' text on first load, stored then. A search asks for the index of the completed chunk
sets of its stores: the merged index is keyed by exactly that set of ids, so it is rebuilt only when a file
was added or removed, and only the parts not yet in memory are read from the database. Parts and merged
indexes share one budget (`lexical_cache_mb`), least recently used out first.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import Chunk, ChunkSet
from orchestrator.files import budget_cache
from orchestrator.files.budget_cache import BudgetCache, PerProcess, parts_key
from orchestrator.files.retrieval.bm25 import Index, Postings
from orchestrator.providers.embeddings import offload

log = logging.getLogger(__name__)

# Chunk sets read per statement when loading parts (an IN list of this many ids).
LOAD_BATCH = 500


def store_postings(session: Session, chunk_set_id: str) -> Postings:
    """Compute the chunk set's postings from its stored chunks and keep them in its row; ingestion calls
    this in the transaction that stores the chunks, so the two never disagree."""
    rows = session.execute(
        select(Chunk.id, Chunk.text).where(Chunk.chunk_set_id == chunk_set_id).order_by(Chunk.seq)
    ).all()
    postings = Postings.build([row.id for row in rows], [row.text for row in rows])
    session.execute(update(ChunkSet).where(ChunkSet.id == chunk_set_id).values(postings=postings.encode()))
    return postings


@dataclass(frozen=True)
class StoreIndex:
    """The merged index of some chunk sets, and where each one sits in it (for the filters' mask)."""

    index: Index
    parts: tuple[str, ...]
    position: dict[str, int] = field(default_factory=dict)

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """A boolean per part: the chunk sets in `allowed`."""
        return budget_cache.mask(self.position, len(self.parts), allowed)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + 100 * len(self.parts)


class LexicalCache:
    def __init__(self, budget_bytes: int):
        self._memory = BudgetCache(budget_bytes)

    def index(self, session: Session, chunk_set_ids: Collection[str]) -> StoreIndex:
        parts, key = parts_key("index", chunk_set_ids)

        def build() -> tuple[StoreIndex, int]:
            postings = self._parts(session, parts)
            merged = offload(lambda: Index.merge([postings[part] for part in parts]))
            built = StoreIndex(merged, parts, {part: i for i, part in enumerate(parts)})
            if built.nbytes > self._memory.budget:
                log.warning(
                    "the lexical index of %d chunk sets takes %d MB, more than lexical_cache_mb: it is rebuilt "
                    "for every search until that setting is raised",
                    len(parts),
                    built.nbytes // 2**20,
                )
            return built, built.nbytes

        return self._memory.built(key, build)

    def _parts(self, session: Session, parts: Sequence[str]) -> dict[str, Postings]:
        found = {key: self._memory.get(("part", key)) for key in parts}
        missing = [key for key, part in found.items() if part is None]
        for start in range(0, len(missing), LOAD_BATCH):
            batch = missing[start : start + LOAD_BATCH]
            rows = session.execute(select(ChunkSet.id, ChunkSet.postings).where(ChunkSet.id.in_(batch))).all()
            blobs = dict(rows)
            for chunk_set_id in batch:
                blob = blobs.get(chunk_set_id)
                # Stored before postings existed (or gone since the search began: it finds nothing).
                part = Postings.decode(blob) if blob else store_postings(session, chunk_set_id)
                found[chunk_set_id] = part
                self._memory.put(("part", chunk_set_id), part, part.nbytes)
        return found


# This process's cache: `cache(budget_mb)`.
cache = PerProcess(LexicalCache)
