"""The per-process lexical index across changes of a store's files: the segments of the previous index are
reused, and the scores stay those of one merge of the same chunk sets (bm25.Index.merge)."""

from __future__ import annotations

import numpy as np

from orchestrator.files import lexical_index
from orchestrator.files.lexical_index import LexicalCache
from orchestrator.files.retrieval.bm25 import Index, Postings

QUERIES = [np.array(q, dtype=np.int64) for q in ([1], [2, 3], [1, 1, 5], [4, 9, 40, 1000], [7, 7, 7, 2])]


class StoredParts(LexicalCache):
    """The cache with its chunk sets' postings in a dict rather than the database; counts what it loads."""

    def __init__(self, parts: dict[str, Postings], budget_bytes: int = 2**30):
        super().__init__(budget_bytes)
        self.stored = parts
        self.loaded: list[str] = []

    def _load(self, session, parts):
        self.loaded.extend(parts)
        return {part: self.stored[part] for part in parts}


def stored(count: int, seed: int = 1) -> dict[str, Postings]:
    rng = np.random.default_rng(seed)
    parts, next_id = {}, 0
    for number in range(count):
        n = int(rng.integers(1, 12))
        lengths = rng.integers(0, 15, size=n).astype(np.uint32)
        terms = rng.zipf(1.3, int(lengths.sum()))
        parts[f"cs_{number:04d}"] = Postings.from_terms(range(next_id, next_id + n), lengths, terms)
        next_id += n
    return parts


def assert_as_one_merge(cache: StoredParts, ids: list[str]) -> lexical_index.StoreIndex:
    built = cache.index(None, ids)
    full = Index.merge([cache.stored[part] for part in sorted(ids)])
    allowed_ids = set(sorted(ids)[::3])
    full_allowed = np.array([part in allowed_ids for part in sorted(ids)])
    for query in QUERIES:
        for limit in (2, 500):
            expected = [(h.chunk_id, h.score, h.relevance) for h in full.search(query, limit)]
            assert [(h.chunk_id, h.score, h.relevance) for h in built.index.search(query, limit)] == expected
        expected = [(h.chunk_id, h.score) for h in full.search(query, 500, full_allowed)]
        found = built.index.search(query, 500, built.mask(allowed_ids))
        assert [(h.chunk_id, h.score) for h in found] == expected
    return built


def test_a_file_added_loads_only_its_chunk_set_and_reuses_the_merged_rest():
    cache = StoredParts(stored(41))
    ids = sorted(cache.stored)
    first = assert_as_one_merge(cache, ids[:40])
    cache.loaded.clear()
    second = assert_as_one_merge(cache, ids)
    assert cache.loaded == [ids[40]]
    assert first.segments[0] in second.segments  # the 40 merged chunk sets, not merged again


def test_removed_files_are_masked_then_compacted_without_reading_the_database():
    cache = StoredParts(stored(40))
    ids = sorted(cache.stored)
    assert_as_one_merge(cache, ids)
    cache.loaded.clear()
    fewer = assert_as_one_merge(cache, [part for i, part in enumerate(ids) if i % 5])  # a fifth gone: masked
    assert fewer.index.dead is not None
    few = assert_as_one_merge(cache, ids[30:])  # three quarters gone: compacted
    assert few.index.dead is None and cache.loaded == []


def test_files_added_one_by_one_keep_a_few_segments_and_the_same_scores():
    cache = StoredParts(stored(200, seed=2))
    ids = sorted(cache.stored)
    assert_as_one_merge(cache, ids[:100])
    for count in range(101, 201):
        built = cache.index(None, ids[:count])
        # Per tier fewer than TIER segments
        assert len(built.segments) < 4 * lexical_index.TIER
    assert_as_one_merge(cache, ids)
    assert len(cache.index(None, ids).segments) <= lexical_index.MAX_SEGMENTS


def test_two_stores_searched_together_reuse_each_stores_segments():
    cache = StoredParts(stored(30, seed=3))
    ids = sorted(cache.stored)
    assert_as_one_merge(cache, ids[:20])
    assert_as_one_merge(cache, ids[20:])
    cache.loaded.clear()
    assert len(assert_as_one_merge(cache, ids).segments) == 2
    assert cache.loaded == []


def test_an_index_past_the_budget_is_rebuilt_not_kept():
    cache = StoredParts(stored(10), budget_bytes=100)
    ids = sorted(cache.stored)
    assert_as_one_merge(cache, ids)
    cache.loaded.clear()
    assert_as_one_merge(cache, ids)
    assert cache.loaded == ids


def test_a_segment_mostly_of_other_files_is_not_compacted_for_a_few_of_them():
    cache = StoredParts(stored(40, seed=4))
    ids = sorted(cache.stored)
    assert_as_one_merge(cache, ids)
    cache.loaded.clear()
    assert_as_one_merge(cache, ids[:2])  # another store sharing two of the files
    assert cache.loaded == ids[:2]


def test_a_big_load_hands_the_freed_heap_back_once_merged(monkeypatch):
    from orchestrator.providers import native_memory

    parts = stored(20, seed=9)
    released = []
    monkeypatch.setattr(native_memory, "release_freed", lambda: released.append(True))
    monkeypatch.setattr(native_memory, "TRIM_BYTES", 0)
    StoredParts(parts).index(None, set(parts))
    assert released == [True]
    monkeypatch.setattr(native_memory, "TRIM_BYTES", 2**40)
    StoredParts(parts).index(None, set(parts))
    assert released == [True]
