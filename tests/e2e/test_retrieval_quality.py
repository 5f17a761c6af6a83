"""Ranking quality through the SDK: the project's small labelled set (tests/data/retrieval/, written for this
suite) loaded into a store file by file, every query searched, nDCG@10 scored by trec_eval's definition
beside a textbook BM25 (bm25s, k1 1.2, b 0.75, English stemming and stop words) over the same documents.
Lexical search is to be at least as good as that reference, give or take 0.01."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import on_both_targets
from tests.support.relevance import evaluate, load_beir, load_store, reference_bm25, search_run

pytestmark = [pytest.mark.e2e, on_both_targets]

HANDMADE = Path(__file__).resolve().parent.parent / "data" / "retrieval"


def test_lexical_search_ranks_at_least_as_well_as_bm25(client):
    collection = load_beir(HANDMADE)
    store_id, files = load_store(client, collection, "quality")
    ours = evaluate(
        collection.qrels, search_run(client, store_id, collection, files, ranking_options={"ranker": "none"})
    )
    reference = evaluate(collection.qrels, reference_bm25(collection))
    assert ours["ndcg@10"] >= reference["ndcg@10"] - 0.01, (ours, reference)
