"""The stacked vectors' search: exact up to a size, past it a code with exact rescoring (vector_index.py)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.files import vector_index
from orchestrator.files.vector_index import Matrix, stack

DIMS = 32


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows around a few centres, as embeddings of related texts are (pure noise has no near neighbours)."""
    centres = rng.normal(size=(20, DIMS))
    return unit(centres[rng.integers(0, 20, rows)] + 0.7 * rng.normal(size=(rows, DIMS)))


def three_sets(seed: int = 5, rows: int = 1500) -> tuple[list[Matrix], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = clustered(rng, 3 * rows)
    ids = np.arange(3 * rows, dtype=np.int64) * 10 + 7  # chunk ids are not row numbers
    parts = [Matrix(ids[i * rows : (i + 1) * rows], vectors[i * rows : (i + 1) * rows]) for i in range(3)]
    return parts, ids, vectors


def brute_force(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, limit: int) -> list[int]:
    scores = vectors @ query
    return [int(ids[i]) for i in np.lexsort((ids, -scores))[:limit]]


def test_small_stacks_are_searched_exactly_without_a_code():
    parts, ids, vectors = three_sets(rows=200)
    stacked = stack(parts, ("a", "b", "c"))
    assert stacked.codes is None
    query = unit(np.random.default_rng(1).normal(size=(1, DIMS)))[0]
    found = stacked.nearest(query, 25)
    assert [chunk_id for chunk_id, _ in found] == brute_force(ids, vectors, query, 25)


def test_past_the_threshold_a_code_finds_nearly_all_the_exact_neighbours_with_exact_scores():
    parts, ids, vectors = three_sets()
    stacked = stack(parts, ("a", "b", "c"), exact_rows=1000)
    assert stacked.codes is not None and stacked.nbytes > vectors.nbytes
    rng = np.random.default_rng(2)
    queries = unit(vectors[rng.integers(0, len(vectors), 20)] + 0.5 * rng.normal(size=(20, DIMS)))
    hits = 0
    for query, found in zip(queries, stacked.nearest_many(queries, 10), strict=True):
        scores = [score for _, score in found]
        assert scores == sorted(scores, reverse=True)
        by_id = dict(zip(ids.tolist(), (vectors @ query).tolist(), strict=True))
        assert scores == pytest.approx([by_id[chunk_id] for chunk_id, _ in found], abs=1e-5)
        hits += len({chunk_id for chunk_id, _ in found} & set(brute_force(ids, vectors, query, 10)))
    assert (
        hits / (10 * len(queries)) >= 0.9
    )  # random data in 32 dimensions; 0.99+ on real embeddings (docs/performance.md)


def test_several_queries_at_once_find_what_each_finds_alone():
    parts, _, _ = three_sets()
    stacked = stack(parts, ("a", "b", "c"), exact_rows=1000)
    queries = unit(np.random.default_rng(3).normal(size=(5, DIMS)))
    # each query rescores its own candidates: a call of several finds for each what a call of one would
    for together, query in zip(stacked.nearest_many(queries, 10), queries, strict=True):
        alone = stacked.nearest(query, 10)
        assert len(together) == 10
        assert [chunk_id for chunk_id, _ in together] == [chunk_id for chunk_id, _ in alone]
        assert [score for _, score in together] == pytest.approx([score for _, score in alone], abs=1e-6)


def test_a_wide_filter_asks_the_code_for_more_and_keeps_to_the_allowed_sets(monkeypatch):
    # a small exact threshold, and fewer candidates (32 × 10 × 3/2) than allowed rows: the code, masked
    monkeypatch.setattr(vector_index, "EXACT_ROWS", 1000)
    parts, ids, vectors = three_sets()
    stacked = stack(parts, ("a", "b", "c"))
    assert stacked.codes is not None
    allowed = np.r_[0:1500, 3000:4500]
    rng = np.random.default_rng(4)
    queries = unit(vectors[rng.integers(0, len(vectors), 5)] + 0.5 * rng.normal(size=(5, DIMS)))
    hits = 0
    for query, found in zip(
        queries, stacked.nearest_many(queries, 10, stacked.mask({"a", "c"})), strict=True
    ):
        assert len(found) == 10 and {chunk_id for chunk_id, _ in found} <= set(ids[allowed].tolist())
        hits += len(
            {chunk_id for chunk_id, _ in found} & set(brute_force(ids[allowed], vectors[allowed], query, 10))
        )
    # random data in 32 dimensions, each query rescoring its own ~320 allowed candidates (what it would alone:
    # 0.88 here); 0.99+ on real embeddings (docs/performance.md)
    assert hits / 50 >= 0.85
    assert stacked.nearest(queries[0], 10, stacked.mask(set())) == []


def test_a_narrow_filter_is_searched_exactly_with_or_without_the_code():
    parts, ids, vectors = three_sets()
    query = unit(np.random.default_rng(4).normal(size=(1, DIMS)))[0]
    for exact_rows in (vector_index.EXACT_ROWS, 1000):
        stacked = stack(parts, ("a", "b", "c"), exact_rows=exact_rows)
        for names, rows in (({"b"}, np.r_[1500:3000]), ({"a", "c"}, np.r_[0:1500, 3000:4500])):
            found = stacked.nearest(query, 10, stacked.mask(names))
            assert [chunk_id for chunk_id, _ in found] == brute_force(ids[rows], vectors[rows], query, 10)


def test_empty_stacks_other_dimensions_and_no_limit_find_nothing():
    query = unit(np.ones((1, DIMS)))[0]
    empty = stack([Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), np.float32))], ("a",), exact_rows=0)
    assert empty.nearest(query, 5) == [] and empty.codes is None
    mixed = stack(
        [Matrix(np.array([1]), unit(np.ones((1, 8)))), Matrix(np.array([2]), unit(np.ones((1, 4))))],
        ("a", "b"),
    )
    assert mixed.nearest(query, 5) == []
    parts, _, _ = three_sets()
    stacked = stack(parts, ("a", "b", "c"), exact_rows=1000)
    assert stacked.nearest(unit(np.ones((1, 8)))[0], 5) == []
    assert stacked.nearest(query, 0) == []


def test_without_faiss_every_search_is_exact(monkeypatch):
    monkeypatch.setattr(vector_index, "_faiss", lambda: None)
    parts, ids, vectors = three_sets()
    stacked = stack(parts, ("a", "b", "c"), exact_rows=1000)
    assert stacked.codes is None
    query = unit(np.random.default_rng(6).normal(size=(1, DIMS)))[0]
    assert [chunk_id for chunk_id, _ in stacked.nearest(query, 10)] == brute_force(ids, vectors, query, 10)


def sets_of(seed: int, sizes: list[int]) -> dict[str, Matrix]:
    """Chunk sets named s00, s01, … of these sizes, with distinct ids, and a near duplicate of a row of the
    first in the last (ties of score at a result's edge must fall the same way whichever way the stack was made)."""
    rng = np.random.default_rng(seed)
    vectors = clustered(rng, sum(sizes))
    vectors[-1] = vectors[0]
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 11
    starts = np.cumsum([0, *sizes])
    return {
        f"s{i:02d}": Matrix(ids[starts[i] : starts[i + 1]], vectors[starts[i] : starts[i + 1]])
        for i in range(len(sizes))
    }


def fresh(sets: dict[str, Matrix], names: set[str], **options) -> vector_index.Stacked:
    parts = tuple(sorted(names))
    return stack([sets[name] for name in parts], parts, **options)


def test_a_stack_cut_from_another_after_adds_and_removes_searches_as_a_fresh_stack_exactly():
    sets = sets_of(7, [300, 0, 250, 400, 120, 90, 310])
    before = fresh(sets, {"s00", "s01", "s02", "s03", "s04"})
    names = {"s00", "s02", "s04", "s05", "s06"}  # s01 (empty) and s03 removed, s05 and s06 added
    cut = vector_index.restack(before, {n: sets[n] for n in ("s05", "s06")}, tuple(sorted(names)))
    full = fresh(sets, names)
    assert cut.parts == full.parts and cut.position == full.position
    assert np.array_equal(cut.matrix.ids, full.matrix.ids) and np.array_equal(cut.part_of, full.part_of)
    assert np.array_equal(cut.matrix.vectors, full.matrix.vectors)
    queries = np.vstack([sets["s00"].vectors[:1], unit(np.random.default_rng(8).normal(size=(6, DIMS)))])
    for allowed in (None, {"s02", "s05"}, {"s00", "s06"}, {"s03"}):
        mask_cut = None if allowed is None else cut.mask(allowed)
        mask_full = None if allowed is None else full.mask(allowed)
        assert cut.nearest_many(queries, 12, mask_cut) == full.nearest_many(queries, 12, mask_full)
    assert cut.nearest(queries[0], 12, cut.mask({"s03"})) == []


def test_a_cut_stack_past_the_threshold_keeps_the_quantizer_and_codes_the_added_rows_alone(monkeypatch):
    monkeypatch.setattr(vector_index, "EXACT_ROWS", 1000)
    sets = sets_of(9, [900, 700, 800, 60, 50])
    before = fresh(sets, {"s00", "s01", "s02"})
    assert before.codes is not None and before.trained_on == 2400
    names = {"s00", "s02", "s03", "s04"}
    coded: list[int] = []
    quantizer = before.codes.pq
    original = vector_index._stack

    def counting(matrices, parts, exact_rows, codes, quantizer, trained_on):
        coded.extend(len(m.ids) for m, c in zip(matrices, codes, strict=True) if c is None and len(m.ids))
        return original(matrices, parts, exact_rows, codes, quantizer, trained_on)

    monkeypatch.setattr(vector_index, "_stack", counting)
    cut = vector_index.restack(before, {n: sets[n] for n in ("s03", "s04")}, tuple(sorted(names)))
    assert coded == [60, 50] and cut.trained_on == 2400  # only the added rows coded, no training
    # the codes are those of coding every row afresh with the same quantizer, and so are the results
    full = fresh(sets, names, quantizer=quantizer)
    assert np.array_equal(cut.code_rows, quantizer.compute_codes(full.matrix.vectors))
    assert np.array_equal(cut.code_rows, full.code_rows)
    queries = unit(np.random.default_rng(10).normal(size=(5, DIMS)))
    for allowed in (None, {"s00", "s03"}, {"s02", "s03", "s04"}):
        mask_cut = None if allowed is None else cut.mask(allowed)
        mask_full = None if allowed is None else full.mask(allowed)
        assert cut.nearest_many(queries, 10, mask_cut) == full.nearest_many(queries, 10, mask_full)


def test_a_store_grown_past_its_quantizers_training_or_mostly_new_is_coded_again(monkeypatch):
    monkeypatch.setattr(vector_index, "EXACT_ROWS", 1000)
    sets = sets_of(11, [1200, 1300, 1400])
    before = fresh(sets, {"s00"})
    grown = vector_index.restack(before, {n: sets[n] for n in ("s01", "s02")}, ("s00", "s01", "s02"))
    assert grown.trained_on == 3900 and grown.codes.pq is not before.codes.pq
    small = fresh(sets, {"s00", "s01"}, exact_rows=5000)
    assert small.codes is None  # an exact stack has no quantizer to keep: the first coded one trains its own
    coded = vector_index.restack(small, {"s02": sets["s02"]}, ("s00", "s01", "s02"))
    assert coded.codes is not None and coded.trained_on == 3900


def test_a_stack_counts_its_vectors_once_and_the_cache_keeps_stacks_only(monkeypatch):
    monkeypatch.setattr(vector_index, "EXACT_ROWS", 1000)
    sets = sets_of(12, [900, 700, 80])
    loads: list[list[str]] = []

    def load(_session, names):
        loads.append(sorted(names))
        return {name: sets[name] for name in names}

    monkeypatch.setattr(vector_index, "load", load)
    cache = vector_index.VectorCache(budget_bytes=10 * 2**20)
    first = cache.stacked(None, {"s00", "s01"})
    vectors = sum(sets[n].vectors.nbytes for n in ("s00", "s01"))
    assert vectors < first.nbytes < vectors * 1.2  # the matrix once, plus ids and codes (48 + 48 bytes a row)
    assert cache._memory.used == first.nbytes
    assert cache.stacked(None, {"s01", "s00"}) is first and loads == [["s00", "s01"]]
    second = cache.stacked(None, {"s00", "s01", "s02"})
    assert loads == [["s00", "s01"], ["s02"]]  # the added set alone is read
    assert cache._memory.used == first.nbytes + second.nbytes
    third = cache.stacked(None, {"s01", "s02"})  # a removal reads nothing
    assert loads == [["s00", "s01"], ["s02"]] and third.rows(["s01", "s02"]) == 780
    assert cache._memory.used == first.nbytes + second.nbytes + third.nbytes


def test_a_stack_larger_than_the_budget_is_not_kept_and_the_next_search_loads_it_again(monkeypatch):
    sets = sets_of(13, [100, 50])
    loads: list[list[str]] = []

    def load(_session, names):
        loads.append(sorted(names))
        return {name: sets[name] for name in names}

    monkeypatch.setattr(vector_index, "load", load)
    cache = vector_index.VectorCache(budget_bytes=20_000)
    for _ in range(2):
        cache.stacked(None, {"s00", "s01"})
    assert loads == [["s00", "s01"]] * 2 and cache._memory.used == 0


def test_a_big_load_hands_the_freed_heap_back_once_stacked(monkeypatch):
    from orchestrator.providers import native_memory

    sets = sets_of(14, [100, 50])
    monkeypatch.setattr(vector_index, "load", lambda _session, names: {name: sets[name] for name in names})
    released = []
    monkeypatch.setattr(native_memory, "release_freed", lambda: released.append(True))
    monkeypatch.setattr(native_memory, "TRIM_BYTES", sets["s00"].nbytes)  # under both sets, not the first
    vector_index.VectorCache(budget_bytes=2**20).stacked(None, {"s00", "s01"})
    assert released == [True]
    vector_index.VectorCache(budget_bytes=2**20).stacked(None, {"s00"})  # a smaller load: kept as it is
    assert released == [True]
