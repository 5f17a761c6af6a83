"""Lexical ranking's pure parts: the tokenizer, a chunk set's postings and their encoding, and BM25 over
merged postings, checked by hand and against the `bm25s` library's Lucene BM25."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.files.retrieval import terms
from orchestrator.files.retrieval.bm25 import K1, B, Index, Postings


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
