"""Fusing ranked lists (lexical, and semantic per embedding model) into one score between 0 and 1.

Reciprocal rank fusion, weighted by how relevant each list found the chunk and scaled so the best possible
chunk scores 1:

    score(c) = 1/|L| · Σ_l relevance_l(c) · (K + 1) / (K + rank_l(c))

`relevance` is in [0, 1]: the share of the query's terms the chunk contains (lexical), or the cosine
similarity clipped at 0 (semantic). A chunk first in every list with every term and a cosine of 1 scores
1; one found by one of two lists scores at most 0.5; one matching one term in three at most a third.
Plain RRF (relevance 1) would give the first hit of every list the same score however poor the match,
which would leave `score_threshold` nothing to measure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

K = 60


def fuse(lists: Sequence[Sequence[tuple[Hashable, float]]], k: int = K) -> dict[Hashable, float]:
    """Each list holds (key, relevance) best first; returns every key's score."""
    if not lists:
        return {}
    scores: dict[Hashable, float] = defaultdict(float)
    for ranked in lists:
        for rank, (key, relevance) in enumerate(ranked, start=1):
            scores[key] += min(max(relevance, 0.0), 1.0) * (k + 1) / (k + rank)
    return {key: score / len(lists) for key, score in scores.items()}


def best_of(per_query: Sequence[dict[Hashable, float]]) -> dict[Hashable, float]:
    """Several queries: each chunk keeps its best score."""
    merged: dict[Hashable, float] = {}
    for scores in per_query:
        for key, score in scores.items():
            merged[key] = max(score, merged.get(key, 0.0))
    return merged
