"""Lexical ranking's pure parts: the tokenizer, a chunk set's postings and their encoding, and BM25 over
merged postings, checked by hand and against the `bm25s` library's Lucene BM25."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.files.retrieval import terms
from orchestrator.files.retrieval.bm25 import K1, B, Index, Postings, Segment


def test_words_are_lowercased_split_on_unicode_stop_words_dropped_and_stemmed():
    assert terms.words("Running RUNS ran; the Café’s naïve cafés") == [
        "run",
        "run",
        "ran",
        "café",
        "naïv",
        "café",
    ]
    assert terms.words("the and of to") == []


def test_terms_are_stable_64_bit_hashes_of_the_stems_shared_by_every_index():
    assert terms.term_id("run") == -7673071330638607365  # stored in postings: must never change
    assert terms.term_ids("running runs") == [terms.term_id("run")] * 2
    run, jump = terms.term_id("run"), terms.term_id("jump")
    assert list(terms.query_terms("runs Jumping running")) == sorted([run, run, jump])


def test_postings_count_each_terms_chunks_and_frequencies_and_survive_encoding():
    postings = Postings.build([7, 8, 9], ["apple apple banana", "banana cherry", "the"])
    assert list(postings.lengths) == [3, 2, 0]
    by_term = dict(zip(postings.terms.tolist(), zip(postings.df.tolist(), strict=True), strict=True))
    assert by_term[terms.term_id("banana")] == (2,)
    decoded = Postings.decode(postings.encode())
    for name in ("chunk_ids", "lengths", "terms", "df", "docs", "tfs"):
        assert np.array_equal(getattr(decoded, name), getattr(postings, name)), name
    start = int(np.searchsorted(postings.terms, terms.term_id("apple")))
    offset = int(postings.df[:start].sum())
    assert (postings.docs[offset], postings.tfs[offset]) == (0, 2)
    with pytest.raises(ValueError):
        Postings.decode(b"nonsense" * 4)


def test_bm25_matches_a_hand_computed_example():
    index = Index.merge([Postings.build([1, 2], ["apple banana", "apple apple cherry"])])
    hits = index.search(terms.query_terms("apple cherry"), 10)
    n, avgdl = 2, 2.5
    idf_apple = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    idf_cherry = math.log(1 + (n - 1 + 0.5) / (1 + 0.5))

    def weight(idf, tf, length):
        return idf * tf / (tf + K1 * (1 - B + B * length / avgdl))

    second = weight(idf_apple, 2, 3) + weight(idf_cherry, 1, 3)
    first = weight(idf_apple, 1, 2)
    assert [hit.chunk_id for hit in hits] == [2, 1]
    assert [hit.score for hit in hits] == pytest.approx([second, first], rel=1e-6)
    # relevance: the share of the query's IDF the chunk holds
    assert hits[0].relevance == pytest.approx(1.0)
    assert hits[1].relevance == pytest.approx(idf_apple / (idf_apple + idf_cherry), rel=1e-6)


CORPUS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A lazy afternoon by the river: dogs sleeping, foxes watching.",
    "Banks raise interest rates to fight inflation; borrowing costs climb.",
    "The central bank held rates steady while inflation cooled.",
    "River otters and beavers build dams along the bank.",
    "Quick recipes: brown rice, lentils and a fox-shaped cookie.",
    "Jumping spiders see in colour and hunt by day.",
    "Interest in dog training grows as more people adopt puppies.",
    "Beavers, otters, foxes: the river's mammals through the seasons.",
    "Costs of borrowing fell when the bank cut its rates.",
    "A brown dog and a brown fox, both quick, both lazy, met by the river.",
    "Inflation, inflation, inflation: rates, rates and more rates.",
]


@pytest.mark.parametrize(
    "query",
    [
        "river bank",
        "quick brown fox",
        "inflation rates",
        "lazy dogs",
        "beaver dams otters",
        "colour",
        "rates, rates",
    ],
)
def test_scores_equal_the_bm25s_librarys_lucene_bm25_across_split_chunk_sets(query):
    bm25s = pytest.importorskip("bm25s")
    reference = bm25s.BM25(method="lucene", k1=K1, b=B)
    reference.index([terms.words(text) for text in CORPUS], show_progress=False)
    expected = reference.get_scores(terms.words(query))  # a repeated term counts twice in both
    # The corpus in three chunk sets of different sizes, merged: one index, as a store's is.
    parts = [Postings.build(range(0, 5), CORPUS[:5]), Postings.build(range(5, 6), CORPUS[5:6])]
    parts.append(Postings.build(range(6, 12), CORPUS[6:]))
    hits = Index.merge(parts).search(terms.query_terms(query), len(CORPUS))
    found = np.zeros(len(CORPUS))
    for hit in hits:
        found[hit.chunk_id] = hit.score
    assert found == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len(hits) == int((expected > 0).sum())


def test_idf_counts_only_the_chunk_sets_merged_together():
    alone = Index.merge([Postings.build([1, 2], ["zebra crossing", "quiet street"])])
    crowded = Index.merge(
        [
            Postings.build([1, 2], ["zebra crossing", "quiet street"]),
            Postings.build([3, 4], ["zebra", "zebra"]),
        ]
    )
    query = terms.query_terms("zebra")
    assert alone.search(query, 1)[0].score > crowded.search(query, 1)[0].score


def test_the_filters_mask_keeps_only_allowed_chunk_sets_and_limit_cuts():
    index = Index.merge(
        [Postings.build([1, 2], ["red apple", "red cherry"]), Postings.build([3], ["red wine"])]
    )
    query = terms.query_terms("red")
    assert {hit.chunk_id for hit in index.search(query, 10)} == {1, 2, 3}
    assert [hit.chunk_id for hit in index.search(query, 10, np.array([False, True]))] == [3]
    assert len(index.search(query, 2)) == 2
    assert index.search(terms.query_terms("absent words"), 10) == []
    assert index.search(terms.query_terms("the of"), 10) == []
    assert Index.merge([]).search(query, 10) == []


def test_a_query_term_no_chunk_holds_still_counts_in_relevance():
    index = Index.merge([Postings.build([1, 2], ["red apple", "green pear"])])
    hit = index.search(terms.query_terms("red unicorn"), 10)[0]
    assert hit.chunk_id == 1 and 0 < hit.relevance < 0.5


def _random_parts(seed: int, count: int) -> list[Postings]:
    """Small chunk sets over a small vocabulary: common terms, repeated terms and ties."""
    rng = np.random.default_rng(seed)
    parts, next_id = [], 0
    for _ in range(count):
        n = int(rng.integers(1, 12))
        lengths = rng.integers(0, 15, size=n).astype(np.uint32)
        parts.append(
            Postings.from_terms(range(next_id, next_id + n), lengths, rng.zipf(1.3, int(lengths.sum())))
        )
        next_id += n
    return parts


def _same_hits(found, expected):
    assert [(h.chunk_id, h.score, h.relevance) for h in found] == [
        (h.chunk_id, h.score, h.relevance) for h in expected
    ]


QUERIES = [np.array(q, dtype=np.int64) for q in ([1], [2, 3], [1, 1, 5], [4, 9, 40, 1000], [7, 7, 7, 2])]


def test_segments_searched_together_score_exactly_as_one_merge_of_the_same_chunk_sets():
    parts = _random_parts(1, 30)
    full = Index.merge(parts)
    # The same chunk sets split into segments built at different times, in another order.
    split = Index(
        [Segment.merge(parts[20:]), Segment.merge(parts[:7]), Segment.merge([Segment.merge(parts[7:20])])]
    )
    for query in QUERIES:
        for limit in (1, 3, 10, 500):
            _same_hits(split.search(query, limit), full.search(query, limit))
    assert split.n == full.n == sum(len(p.chunk_ids) for p in parts)


def test_removed_chunk_sets_left_in_a_segment_count_for_nothing_and_are_never_found():
    parts = _random_parts(2, 25)
    gone = {3, 4, 11, 24}
    kept = [p for i, p in enumerate(parts) if i not in gone]
    full = Index.merge(kept)
    dead = np.zeros(len(parts), dtype=bool)
    dead[list(gone)] = True
    masked = Index([Segment.merge(parts)], [dead])
    compacted = Index([Segment.merge(parts).without(dead)])
    gone_ids = {int(c) for i in gone for c in parts[i].chunk_ids}
    for query in QUERIES:
        expected = full.search(query, 500)
        assert not {h.chunk_id for h in expected} & gone_ids
        _same_hits(masked.search(query, 500), expected)
        _same_hits(compacted.search(query, 500), expected)
        _same_hits(masked.search(query, 4), full.search(query, 4))


def test_the_filters_mask_follows_the_parts_segment_after_segment():
    parts = _random_parts(3, 12)
    split = Index([Segment.merge(parts[6:]), Segment.merge(parts[:6])])
    full = Index.merge(parts[6:] + parts[:6])  # the same part numbering
    allowed = np.arange(12) % 3 == 0
    for query in QUERIES:
        found = split.search(query, 50, allowed)
        _same_hits(found, full.search(query, 50, allowed))
        allowed_ids = {int(c) for i in np.flatnonzero(allowed) for c in (parts[6:] + parts[:6])[i].chunk_ids}
        assert {h.chunk_id for h in found} <= allowed_ids


def test_ties_at_the_cut_go_to_the_lowest_chunk_ids_whatever_the_order():
    same = ["red apple"] * 6
    one = Index.merge([Postings.build(range(6), same)])
    other = Index(
        [
            Segment.merge([Postings.build(range(3, 6), same[3:])]),
            Segment.merge([Postings.build(range(3), same[:3])]),
        ]
    )
    query = terms.query_terms("apple")
    assert (
        [h.chunk_id for h in one.search(query, 4)]
        == [h.chunk_id for h in other.search(query, 4)]
        == [0, 1, 2, 3]
    )


def test_a_frequency_past_a_byte_is_kept_and_merges_with_narrow_segments():
    many = Postings.build([1], ["apple " * 300])
    few = Postings.build([2, 3], ["apple pear", "pear"])
    wide, narrow = Segment.merge([many]), Segment.merge([few])
    assert (wide.tfs.max(), narrow.tfs.dtype) == (300, np.uint8)
    assert Segment.merge([narrow, wide]).tfs.max() == 300
    query = terms.query_terms("apple pear")
    _same_hits(Index([narrow, wide]).search(query, 10), Index.merge([few, many]).search(query, 10))


def test_skipping_common_terms_postings_finds_what_scoring_every_chunk_finds(monkeypatch):
    """`_alone` (one term) and `_pruned` (MaxScore over the common terms) give the hits, scores and
    relevance that scoring every chunk gives, to the bit, across segments, removed chunk sets and filters."""
    parts = _random_parts(5, 120)
    dead = np.zeros(60, dtype=bool)
    dead[[2, 17, 40]] = True
    index = Index([Segment.merge(parts[:60]), Segment.merge(parts[60:])], [dead, None])
    allowed = np.random.default_rng(6).random(index.parts) < 0.7
    rng = np.random.default_rng(7)
    queries = [rng.zipf(1.3, int(rng.integers(1, 5))).astype(np.int64) for _ in range(150)]
    cases = [(q, limit, mask) for q in queries for limit in (1, 5, 40) for mask in (None, allowed)]

    taken = {"_alone": 0, "_pruned": 0}
    for name in taken:
        real = getattr(Index, name)

        def counted(self, *args, _real=real, _name=name):
            found = _real(self, *args)
            taken[_name] += found is not None
            return found

        monkeypatch.setattr(Index, name, counted)
    fast = [index.search(query, limit, mask) for query, limit, mask in cases]
    assert taken["_alone"] > 50 and taken["_pruned"] > 20  # both ways are exercised, not only the fallback

    for name in taken:
        monkeypatch.setattr(Index, name, lambda self, *args: None)
    for found, (query, limit, mask) in zip(fast, cases, strict=True):
        _same_hits(found, index.search(query, limit, mask))
