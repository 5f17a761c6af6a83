"""The lexical index of the stores a search reads, in each process's memory (BM25: retrieval/bm25.py).

A chunk set's postings are computed once, when its chunks are stored, and kept in its row
(`chunk_sets.postings`, in the same transaction as the chunks); a set stored before postings existed gets
them from its chunks' text on first load, stored then. A search asks for the index of the completed chunk
sets of its stores, kept by exactly that set of ids. When the set changes (a file added or removed) the new
index reuses the segments of the indexes already in memory, as Lucene does: the added chunk sets become a
small new segment, a removed one is masked out of its segment (compacted once half of a segment is gone),
and segments of the same size tier are merged when there are `TIER` of them, so a store of a million chunks
takes a file in milliseconds, not the half minute of merging it all again. The scores are those of one merge
of the same chunk sets (bm25.Index counts N, df and avgdl over all segments). Indexes share one budget
(`lexical_cache_mb`), least recently used out first; a segment lives as long as an index in the budget holds
it, and each index is counted with all its segments, so memory stays within the budget.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from orchestrator.db.retrieval_models import Chunk, ChunkSet
from orchestrator.files import budget_cache
from orchestrator.files.budget_cache import BudgetCache, PerProcess
from orchestrator.files.retrieval.bm25 import Index, Postings, Segment
from orchestrator.providers import native_memory
from orchestrator.providers.embeddings import offload

log = logging.getLogger(__name__)

# Chunk sets read per statement when loading parts (an IN list of this many ids).
LOAD_BATCH = 500
# Segments of one size tier merged together (and sizes within this factor make a tier).
TIER = 8
# More segments than this and the smallest are merged, whatever their tiers.
MAX_SEGMENTS = 24


def store_postings(session: Session, chunk_set_id: str) -> Postings:
    """Compute the chunk set's postings from its stored chunks and keep them in its row; ingestion calls
    this in the transaction that stores the chunks, so the two never disagree."""
    rows = session.execute(
        select(Chunk.id, Chunk.text).where(Chunk.chunk_set_id == chunk_set_id).order_by(Chunk.seq)
    ).all()
    postings = Postings.build([row.id for row in rows], [row.text for row in rows])
    session.execute(update(ChunkSet).where(ChunkSet.id == chunk_set_id).values(postings=postings.encode()))
    return postings


@dataclass(frozen=True, eq=False)
class _Segment:
    """A merged segment and the chunk sets it holds, in its order."""

    segment: Segment
    parts: tuple[str, ...]
    members: frozenset[str] = field(init=False)
    sizes: np.ndarray = field(init=False)  # chunks per part

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", frozenset(self.parts))
        object.__setattr__(self, "sizes", np.bincount(self.segment.part_of, minlength=len(self.parts)))

    def dead(self, wanted: Collection[str]) -> np.ndarray:
        return np.array([part not in wanted for part in self.parts], dtype=bool)

    def live_chunks(self, wanted: Collection[str]) -> int:
        return int(self.sizes[~self.dead(wanted)].sum())


@dataclass(frozen=True)
class StoreIndex:
    """The index of some chunk sets (its segments'), and where each one sits in it (for the filters' mask)."""

    index: Index
    parts: tuple[str, ...]  # the segments' parts one after the other (a removed one still holds its place)
    position: dict[str, int] = field(default_factory=dict)
    segments: tuple[_Segment, ...] = ()

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """A boolean per part: the chunk sets in `allowed`."""
        return budget_cache.mask(self.position, len(self.parts), allowed)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + sum(s.segment.nbytes for s in self.segments) + 100 * len(self.parts)


class LexicalCache:
    def __init__(self, budget_bytes: int):
        self._memory = BudgetCache(budget_bytes)
        # The segments some index in memory holds: what a changed set of chunk sets can reuse.
        self._segments: weakref.WeakSet[_Segment] = weakref.WeakSet()

    def index(self, session: Session, chunk_set_ids: Collection[str]) -> StoreIndex:
        # Kept by the set itself: a hit hashes and compares 10,000 ids in a fraction of a millisecond, where
        # sorting them into a digest took 3–13 ms of every search of such a store.
        key = ("index", frozenset(chunk_set_ids))

        def build() -> tuple[StoreIndex, int]:
            built = self._build(session, tuple(sorted(key[1])))
            if built.nbytes > self._memory.budget:
                log.warning(
                    "the lexical index of %d chunk sets takes %d MB, more than lexical_cache_mb: it is rebuilt "
                    "for every search until that setting is raised",
                    len(key[1]),
                    built.nbytes // 2**20,
                )
            return built, built.nbytes

        return self._memory.built(key, build)

    def _build(self, session: Session, parts: tuple[str, ...]) -> StoreIndex:
        wanted = set(parts)
        chosen = self._reusable(wanted)
        covered = set().union(*(s.members for s in chosen)) & wanted
        missing = [part for part in parts if part not in covered]
        if missing:
            postings = self._load(session, missing)
            loaded = sum(part.nbytes for part in postings.values())
            chosen.append(
                _Segment(offload(lambda: Segment.merge([postings[p] for p in missing])), tuple(missing))
            )
            del postings
            native_memory.release_after(loaded)
        segments = offload(lambda: _tiered(chosen, wanted))
        for segment in segments:
            self._segments.add(segment)
        order = tuple(part for segment in segments for part in segment.parts)
        index = Index([s.segment for s in segments], [s.dead(wanted) for s in segments])
        position = {part: i for i, part in enumerate(order) if part in wanted}
        return StoreIndex(index, order, position, tuple(segments))

    def _reusable(self, wanted: set[str]) -> list[_Segment]:
        """Segments in memory holding wanted chunk sets, largest first, none twice. One of which less than
        1/TIER is wanted (another store's, sharing a few files) is left: its chunk sets are read again rather
        than the whole segment compacted for them."""
        chosen: list[_Segment] = []
        covered: set[str] = set()
        for segment in sorted(self._segments, key=lambda s: -len(s.parts)):
            live = segment.members & wanted
            enough = segment.live_chunks(wanted) * TIER >= int(segment.sizes.sum())
            if live and enough and not live & covered:
                chosen.append(segment)
                covered |= live
        return chosen

    def _load(self, session: Session, parts: Sequence[str]) -> dict[str, Postings]:
        found: dict[str, Postings] = {}
        for start in range(0, len(parts), LOAD_BATCH):
            batch = parts[start : start + LOAD_BATCH]
            rows = session.execute(select(ChunkSet.id, ChunkSet.postings).where(ChunkSet.id.in_(batch))).all()
            blobs = dict(rows)
            for chunk_set_id in batch:
                if chunk_set_id not in blobs:  # gone since the search began: it finds nothing, and no write
                    found[chunk_set_id] = Postings.build([], [])
                elif blob := blobs[chunk_set_id]:
                    found[chunk_set_id] = Postings.decode(blob)
                else:  # stored before postings existed
                    found[chunk_set_id] = store_postings(session, chunk_set_id)
        return found


def _tiered(segments: list[_Segment], wanted: set[str]) -> list[_Segment]:
    """The segments to search, after the merges due: a segment more than half removed is compacted, and
    `TIER` segments of one size tier (chunks within a factor `TIER`) become one, so a store holds a few
    segments per tier, each chunk is merged again about log_TIER(N) times, and a file's arrival costs the
    merge of its small tier, almost always."""
    segments = [_compacted(segment, wanted) for segment in segments]
    while True:
        tiers: dict[int, list[_Segment]] = {}
        for segment in segments:
            size = max(segment.live_chunks(wanted), 1)
            tiers.setdefault(int(math.log(size, TIER)), []).append(segment)
        full = [tier for tier in tiers.values() if len(tier) >= TIER]
        if not full and len(segments) <= MAX_SEGMENTS:
            return segments
        group = (
            full[0]
            if full
            else sorted(segments, key=lambda s: s.live_chunks(wanted))[: len(segments) - MAX_SEGMENTS + 1]
        )
        merged = _merged(group, wanted)
        segments = [s for s in segments if s not in group] + [merged]


def _compacted(segment: _Segment, wanted: set[str]) -> _Segment:
    dead = segment.dead(wanted)
    if not dead.any() or segment.live_chunks(wanted) * 2 >= int(segment.sizes.sum()):
        return segment
    return _Segment(segment.segment.without(dead), tuple(p for p in segment.parts if p in wanted))


def _merged(group: list[_Segment], wanted: set[str]) -> _Segment:
    pieces, parts = [], []
    for segment in group:
        dead = segment.dead(wanted)
        pieces.append(segment.segment.without(dead) if dead.any() else segment.segment)
        parts.extend(p for p in segment.parts if p in wanted)
    return _Segment(Segment.merge(pieces), tuple(parts))


# This process's cache: `cache(budget_mb)`.
cache = PerProcess(LexicalCache)
