"""The quality measures' own plumbing: BEIR files round-trip, a sample keeps every judged document, trec_eval's
nDCG through `evaluate`, and the reference BM25 on the project's labelled set."""

from __future__ import annotations

from pathlib import Path

from tests.support.relevance import (
    Collection,
    evaluate,
    load_beir,
    ranked,
    reference_bm25,
    sample,
    write_beir,
)

HANDMADE = Path(__file__).resolve().parent.parent / "data" / "retrieval"


def test_beir_files_round_trip(tmp_path):
    collection = load_beir(HANDMADE)
    write_beir(collection, tmp_path / "copy")
    again = load_beir(tmp_path / "copy", collection.name)
    assert (again.corpus, again.queries, again.qrels) == (
        collection.corpus,
        collection.queries,
        collection.qrels,
    )


def test_a_sample_keeps_the_relevant_documents_of_its_queries():
    collection = load_beir(HANDMADE)
    small = sample(collection, queries=5, documents=20)
    assert len(small.queries) == 5 and len(small.corpus) == 20
    for query_id in small.queries:
        assert small.qrels[query_id] == collection.qrels[query_id]
        assert set(small.qrels[query_id]) <= set(small.corpus)


def test_evaluate_scores_the_order_given():
    qrels = {"q": {"a": 2, "b": 1}}
    perfect = evaluate(qrels, {"q": ranked(["a", "b", "c"])})
    assert perfect == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@50": 1.0}
    swapped = evaluate(qrels, {"q": ranked(["b", "a"])})
    assert 0.5 < swapped["ndcg@10"] < 1.0
    assert evaluate(qrels, {})["ndcg@10"] == 0.0


def test_the_reference_bm25_stems_and_ranks_the_closest_document_first():
    corpus = {
        "bikes": {"title": "Bicycles", "text": "Repairing punctured tyres on bicycles."},
        "cakes": {"title": "Cakes", "text": "Baking a sponge cake."},
    }
    collection = Collection("tiny", corpus, {"q": "puncture repair for a bicycle"}, {"q": {"bikes": 1}})
    run = reference_bm25(collection)
    assert list(run["q"]) == ["bikes"]
