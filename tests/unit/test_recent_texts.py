"""Short texts embedded lately are not embedded again; the rest are, in one call, and order is kept."""

import numpy as np

from orchestrator.providers.embeddings import LocalEmbedder
from orchestrator.providers.recent_texts import RecentVectors


class CountingEncoder:
    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[float(len(text)), float(ord(text[0]))] for text in texts], dtype=np.float32)


def test_only_texts_not_seen_lately_are_embedded_in_one_call_and_rows_keep_the_callers_order():
    recent, encoder = RecentVectors(size=10), CountingEncoder()
    first = recent.embed(["ab", "c", "ab"], encoder.embed)
    second = recent.embed(["def", "c", "ab"], encoder.embed)
    assert encoder.calls == [["ab", "c"], ["def"]]
    assert first.tolist() == [[2, 97], [1, 99], [2, 97]]
    assert second.tolist() == [[3, 100], [1, 99], [2, 97]]


def test_the_least_recently_used_text_goes_first():
    recent, encoder = RecentVectors(size=2), CountingEncoder()
    recent.embed(["a"], encoder.embed)
    recent.embed(["b"], encoder.embed)
    recent.embed(["a"], encoder.embed)  # "a" used again: "b" is now the oldest
    recent.embed(["c"], encoder.embed)
    recent.embed(["a", "b"], encoder.embed)
    assert encoder.calls == [["a"], ["b"], ["c"], ["b"]]


def test_a_query_asked_again_does_not_reach_the_local_model():
    embedder, encoder = LocalEmbedder(), CountingEncoder()
    embedder._loaded, embedder._short = (object(), False), encoder
    embedder.embed_queries(["vector store search"])
    embedder.embed_queries(["vector store search", "refunds"])
    assert encoder.calls == [["vector store search"], ["refunds"]]
