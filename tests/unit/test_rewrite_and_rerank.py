"""The local query-rewriting rule (files/rewrite.py, written out in ARCHITECTURE.md), and rerankers: the
upstream shapes (Cohere/Jina/vLLM and TEI) against the fake upstream, the fallbacks, the ordering."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator.files import rerank, rerank_upstream, rewrite
from orchestrator.settings import Settings
from tests.support.fake_upstream import FakeUpstream


@pytest.mark.parametrize(
    ("query", "rewritten"),
    [
        ("What is the refund policy for damaged goods?", "refund policy damaged goods"),
        ("How do I reset my e-mail password??", "reset e-mail password"),
        ("What's the capital of France", "capital france"),
        ("Tell me about Shipping, shipping times & costs!", "shipping times costs"),
        ("Can you please find the 2024 budget report?", "2024 budget report"),
        ("Where’s the Zürich office?", "zürich office"),
        ("snake_case words", "snake case words"),
        ("who is it", "who is it"),  # nothing but stop words: all its words
        ("¿?!", "¿?!"),  # no word at all: the query unchanged
        ("  glacier   melt  ", "glacier melt"),
    ],
)
def test_the_local_rule_keeps_content_words_in_order(query, rewritten):
    assert rewrite.local_rule(query) == rewritten


def test_the_local_rule_is_what_the_local_rewrite_model_does():
    ctx = SimpleNamespace(settings=Settings(database_url="sqlite://", rewrite_model="local"))
    assert rewrite.rewrite(ctx, "Which rivers flood in spring?") == "rivers flood spring"


def test_a_failing_rewrite_model_falls_back_to_the_rule(tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text("routes:\n  - match: writer\n    base_url: http://127.0.0.1:9/v1\n")
    ctx = SimpleNamespace(
        settings=Settings(database_url="sqlite://", rewrite_model="writer", models_file=str(models))
    )
    assert rewrite.rewrite(ctx, "Which rivers flood in spring?") == "rivers flood spring"


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def settings(fake, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(fake.models_file(9))
    return Settings(database_url="sqlite://", models_file=str(models))


TEXTS = ["desert dunes", "glacier notes [[top]]", "glacier melt raises rivers"]


@pytest.mark.parametrize("model", ["stub-rerank", "stub-tei-rerank"])
def test_both_rerank_shapes_give_a_score_per_text_in_the_texts_order(fake, settings, model):
    fake.reset()
    assert rerank_upstream.scores(model, settings, "glacier melt", TEXTS) == [0.0, 0.9, 0.8]
    (request,) = fake.requests
    assert request.path == "/v1/rerank"
    if model == "stub-tei-rerank":
        assert request.body == {"query": "glacier melt", "texts": TEXTS, "truncate": True}
    else:
        assert request.body == {
            "model": "upstream-reranker",
            "query": "glacier melt",
            "documents": TEXTS,
            "top_n": 3,
        }


def test_raw_logits_are_squashed_in_order_and_left_out_texts_score_zero():
    answer = [{"index": 0, "score": 2.0}, {"index": 2, "score": -1.0}]
    scores = rerank_upstream._by_index(answer, 3, tei=True)
    assert scores[0] == pytest.approx(0.8808, abs=1e-4) and scores[1] == 0.0
    assert scores[2] == pytest.approx(0.2689, abs=1e-4)


def test_a_route_of_another_kind_or_a_dead_endpoint_is_a_rerank_error(settings):
    with pytest.raises(rerank.RerankError, match="kind rerank or tei-rerank"):
        rerank_upstream.scores("stub", settings, "q", ["t"])
    with pytest.raises(rerank.RerankError, match="failed"):
        rerank_upstream.scores("stub-down-rerank", _with_dead_rerank(settings), "q", ["t"])


def _with_dead_rerank(settings: Settings) -> Settings:
    path = settings.models_file + ".dead.yaml"
    with open(path, "w") as handle:
        handle.write(
            "routes:\n  - match: stub-down-rerank\n    base_url: http://127.0.0.1:9\n    kind: rerank\n"
        )
    return settings.model_copy(update={"models_file": path})


@dataclasses.dataclass(frozen=True)
class Hit:
    text: str
    score: float


def test_reorder_sorts_by_the_rerankers_score_applies_the_threshold_and_keeps_ties_in_order(settings):
    ctx = SimpleNamespace(settings=settings.model_copy(update={"rerank_model": "stub-rerank"}))
    hits = [Hit(text, 0.5) for text in TEXTS] + [Hit("more glacier melt", 0.4)]
    reordered = rerank.reorder(ctx, ["glacier melt"], hits, threshold=0.1)
    assert [(hit.text, hit.score) for hit in reordered] == [
        ("glacier notes [[top]]", 0.9),
        ("glacier melt raises rivers", 0.8),
        ("more glacier melt", 0.8),
    ]


def test_reorder_keeps_the_fused_order_when_the_reranker_fails_or_is_none(settings):
    hits = [Hit("b", 0.9), Hit("a", 0.5)]
    dead = SimpleNamespace(
        settings=_with_dead_rerank(settings).model_copy(update={"rerank_model": "stub-down-rerank"})
    )
    assert rerank.reorder(dead, ["a"], hits) == hits
    off = SimpleNamespace(settings=settings.model_copy(update={"rerank_model": "none"}))
    assert rerank.reorder(off, ["a"], hits) == hits


@pytest.mark.parametrize(
    ("options", "wanted"),
    [
        (None, False),
        ({"ranker": "none"}, False),
        ({"ranker": "auto"}, True),
        ({"ranker": "default_2024_08_21"}, True),
        ({"ranker": "default-2024-11-15"}, True),
    ],
)
def test_which_rankers_rerank(options, wanted):
    assert rerank.wanted(options) is wanted


def test_a_rewrite_model_route_is_asked_for_a_search_query_and_its_reply_is_the_query(fake, settings):
    fake.reset()
    ctx = SimpleNamespace(settings=settings.model_copy(update={"rewrite_model": "stub-renamed"}))
    # The fake echoes the question ("Echo: …", cut at the 64 tokens asked for); a real model answers terms.
    assert rewrite.rewrite(ctx, "Which rivers flood in spring?") == "Echo: Which rivers flood in spring?"
    (request,) = fake.requests
    assert request.body["model"] == "upstream-name" and request.body["max_tokens"] == 64
    assert request.body["messages"] == [
        {"role": "system", "content": rewrite.SYSTEM_PROMPT},
        {"role": "user", "content": "Which rivers flood in spring?"},
    ]


def test_the_local_rerankers_vector_cache_drops_the_least_recently_used():
    cache = rerank._VectorCache(2)
    one, two, three = (np.full(3, value, dtype=np.float32) for value in (1, 2, 3))
    cache.put_many({b"a": one, b"b": two})
    assert set(cache.get_many([b"a", b"x"])) == {b"a"}  # "a" used: "b" is now the oldest
    cache.put_many({b"c": three})
    assert set(cache.get_many([b"a", b"b", b"c"])) == {b"a", b"c"}
