"""Fusion, attribute filters and exact vector search: the pure parts of file_search's ranking."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.files.retrieval.filters import matches
from orchestrator.files.retrieval.fusion import K, best_of, fuse, lexical_relevance
from orchestrator.files.vector_index import Matrix, VectorCache, nearest, stack


def test_the_best_possible_chunk_scores_one_and_scores_fall_with_rank():
    scores = fuse([[("a", 1.0), ("b", 1.0)], [("a", 1.0), ("b", 1.0)]])
    assert scores["a"] == pytest.approx(1.0)
    assert scores["b"] == pytest.approx((K + 1) / (K + 2))


def test_a_chunk_found_by_one_of_two_lists_scores_at_most_half():
    scores = fuse([[("lexical-only", 1.0)], [("semantic-only", 1.0)]])
    assert scores == {"lexical-only": pytest.approx(0.5), "semantic-only": pytest.approx(0.5)}


def test_relevance_weights_a_list_so_a_weak_first_hit_scores_low():
    scores = fuse([[("weak", 0.25), ("weaker", 0.1)]])
    assert scores["weak"] == pytest.approx(0.25)
    assert scores["weaker"] == pytest.approx(0.1 * (K + 1) / (K + 2))


def test_a_lists_own_order_stands_whatever_the_relevance_of_lower_hits():
    scores = fuse([[("first", 0.25), ("second", 1.0), ("third", 0.5)]])
    assert scores["first"] > scores["second"] > scores["third"]
    assert scores["first"] == pytest.approx(1.0)  # as relevant as the best it outranks


def test_agreement_between_lists_beats_a_single_top_rank():
    scores = fuse([[("x", 1.0), ("both", 1.0)], [("y", 1.0), ("both", 1.0)]])
    assert scores["both"] > scores["x"] and scores["both"] > scores["y"]


def test_scores_stay_between_zero_and_one_whatever_the_relevance_says():
    scores = fuse([[("a", 7.0), ("b", -3.0)]])
    assert scores["a"] == pytest.approx(1.0) and scores["b"] == 0.0
    assert fuse([]) == {}


def test_several_queries_keep_each_chunks_best_score():
    assert best_of([{"a": 0.2, "b": 0.9}, {"a": 0.7}]) == {"a": 0.7, "b": 0.9}


ATTRS = {"author": "ada", "year": 2024, "draft": False, "score": 4.5}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "eq", "key": "author", "value": "ada"}, True),
        ({"type": "eq", "key": "author", "value": "bob"}, False),
        ({"type": "ne", "key": "author", "value": "bob"}, True),
        ({"type": "gt", "key": "year", "value": 2020}, True),
        ({"type": "gte", "key": "year", "value": 2024}, True),
        ({"type": "lt", "key": "score", "value": 4.5}, False),
        ({"type": "lte", "key": "score", "value": 4.5}, True),
        ({"type": "in", "key": "author", "value": ["bob", "ada"]}, True),
        ({"type": "nin", "key": "author", "value": ["bob", "ada"]}, False),
        ({"type": "eq", "key": "draft", "value": False}, True),
        # typed: 0 is not False, "2024" is not 2024, and a boolean has no order
        ({"type": "eq", "key": "draft", "value": 0}, False),
        ({"type": "eq", "key": "year", "value": "2024"}, False),
        ({"type": "gt", "key": "draft", "value": False}, False),
        ({"type": "gt", "key": "author", "value": 3}, False),
        # a missing attribute matches only the negative comparisons
        ({"type": "eq", "key": "missing", "value": "x"}, False),
        ({"type": "ne", "key": "missing", "value": "x"}, True),
        ({"type": "nin", "key": "missing", "value": ["x"]}, True),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "author", "value": "ada"},
                    {
                        "type": "or",
                        "filters": [
                            {"type": "lt", "key": "year", "value": 2000},
                            {"type": "eq", "key": "draft", "value": False},
                        ],
                    },
                ],
            },
            True,
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "author", "value": "x"},
                    {"type": "gt", "key": "year", "value": 3000},
                ],
            },
            False,
        ),
    ],
)
def test_filters_compare_typed_attribute_values(node, expected):
    assert matches(node, ATTRS) is expected


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_nearest_is_exact_against_brute_force_across_matrices():
    rng = np.random.default_rng(7)
    first, second = unit(rng.normal(size=(500, 32))), unit(rng.normal(size=(300, 32)))
    matrices = [Matrix(np.arange(500), first), Matrix(np.arange(500, 800), second)]
    query = unit(rng.normal(size=(1, 32)))[0]
    found = nearest(matrices, query, 10)
    everything = np.vstack([first, second]) @ query
    assert [chunk_id for chunk_id, _ in found] == list(np.argsort(-everything)[:10])
    assert [score for _, score in found] == pytest.approx(sorted(everything, reverse=True)[:10], abs=1e-6)


def test_nearest_skips_empty_matrices_and_other_dimensions():
    matrices = [
        Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), np.float32)),
        Matrix(np.array([1]), unit(np.ones((1, 8)))),
    ]
    assert nearest(matrices, unit(np.ones((1, 4)))[0], 5) == []
    assert nearest(matrices, unit(np.ones((1, 8)))[0], 5) == [(1, pytest.approx(1.0))]


def test_the_vector_cache_keeps_the_recently_used_stacks_within_its_budget(monkeypatch):
    loads: list[str] = []

    def load(_session, chunk_set_ids):
        loads.extend(chunk_set_ids)
        return {key: Matrix(np.arange(10), np.zeros((10, 25), np.float32)) for key in chunk_set_ids}

    monkeypatch.setattr("orchestrator.files.vector_index.load", load)
    cache = VectorCache(budget_bytes=2700)  # a stack of one set: 80 + 1000 + 40 + 100 bytes
    for chunk_set_id in ["a", "b", "a", "c", "a", "b"]:
        cache.stacked(None, {chunk_set_id})
    # a and b fit; c pushes out b (least recently used), b comes back pushing out c
    assert loads == ["a", "b", "c", "b"]


def test_stacked_sets_answer_several_queries_at_once_exactly_and_honour_the_mask():
    rng = np.random.default_rng(3)
    first, second = unit(rng.normal(size=(40, 16))), unit(rng.normal(size=(30, 16)))
    stacked = stack([Matrix(np.arange(40), first), Matrix(np.arange(100, 130), second)], ("a", "b"))
    queries = unit(rng.normal(size=(3, 16)))
    together = stacked.nearest_many(queries, 5)
    for query, found in zip(queries, together, strict=True):
        alone = nearest([Matrix(np.arange(40), first), Matrix(np.arange(100, 130), second)], query, 5)
        assert [chunk_id for chunk_id, _ in found] == [chunk_id for chunk_id, _ in alone]
        assert [score for _, score in found] == pytest.approx([score for _, score in alone], abs=1e-5)
    only_b = stacked.nearest(queries[0], 5, stacked.mask({"b"}))
    assert len(only_b) == 5 and all(chunk_id >= 100 for chunk_id, _ in only_b)
    assert stacked.nearest(queries[0], 5, stacked.mask(set())) == []


def test_lexical_relevance_is_the_root_of_the_share_within_zero_and_one():
    assert lexical_relevance(1.0) == 1.0 and lexical_relevance(0.25) == pytest.approx(0.5)
    assert lexical_relevance(-1) == 0.0 and lexical_relevance(4) == 1.0
