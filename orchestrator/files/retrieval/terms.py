"""The terms of a text, as lexical search counts them: the same function at ingestion and at query time.

Lowercase, split into unicode words, drop English stop words (Lucene's short list), stem with the Snowball
English stemmer (PyStemmer, in C). Each term is then a 64-bit number, the start of its BLAKE2b digest, so the indexes of different chunk sets share one term space with no vocabulary
to store or agree on (a collision of two stems among a few million is about one in a million million).
"""

from __future__ import annotations

import hashlib
import re
import threading
from functools import lru_cache

import numpy as np
import Stemmer

_WORD = re.compile(r"\w+")
# Lucene's English stop words (its EnglishAnalyzer's, and bm25s' "en"), and the "s" and "t" that the split
# leaves of "it's" and "don't". Postgres' longer list (127 words) measured worse against the reference BM25:
# nDCG@10 0.963 / 0.472 / 0.435 against 0.974 / 0.475 / 0.436 on three labelled sets; dropping words such as
# "where", "should" or "my" from documents and queries changes lengths and loses matches.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
        "s",
        "t",
    ]
)
_stemmers = threading.local()


def words(text: str) -> list[str]:
    """The text's stemmed words, stop words dropped, in order."""
    return [stem for stem in map(_stem, _WORD.findall(text.lower())) if stem is not None]


def term_ids(text: str) -> list[int]:
    """The text's terms as numbers, in order (one per word kept, repeats included)."""
    return [term for term in map(_term, _WORD.findall(text.lower())) if term is not None]


def query_terms(text: str) -> np.ndarray:
    """A query's terms, sorted (int64), repeats kept: a term said twice counts twice, as in Lucene's BM25
    (on long queries, such as a pasted abstract, dropping repeats cost 0.06 of nDCG@10)."""
    return np.sort(np.array(term_ids(text), dtype=np.int64))


def term_id(stem: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(stem.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


@lru_cache(maxsize=1 << 18)
def _term(word: str) -> int | None:
    stem = _stem(word)
    return None if stem is None else term_id(stem)


@lru_cache(maxsize=1 << 18)
def _stem(word: str) -> str | None:
    if word in STOP_WORDS:
        return None
    return _stemmer().stemWord(word)


def _stemmer() -> Stemmer.Stemmer:
    # A Stemmer holds the C library's state: one per thread.
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    return stemmer
