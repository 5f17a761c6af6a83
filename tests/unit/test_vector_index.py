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


def test_several_queries_at_once_find_at_least_what_each_finds_alone():
    parts, _, _ = three_sets()
    stacked = stack(parts, ("a", "b", "c"), exact_rows=1000)
    queries = unit(np.random.default_rng(3).normal(size=(5, DIMS)))
    # one pass rescores every query's candidates for all of them: as good or better, never worse
    for together, query in zip(stacked.nearest_many(queries, 10), queries, strict=True):
        alone = stacked.nearest(query, 10)
        assert len(together) == len(alone) == 10
        assert all(a >= b - 1e-6 for (_, a), (_, b) in zip(together, alone, strict=True))


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
    assert hits / 50 >= 0.9
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
