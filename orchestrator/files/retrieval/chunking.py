"""Cut text into windows of tokens (contract §6.2: `auto` is 800 tokens with 400 of overlap).

Windows of `max_tokens` tokens start every `max_tokens - overlap` tokens; the last window holds whatever
is left (when it adds tokens the previous one did not have). Tokens are cl100k_base's when tiktoken can
load it (see providers/tokens.py), else words and punctuation marks.

The text is encoded block by block (blocks end at whitespace), so a 100 MB document never becomes one
list of 25 million token ids; a window is decoded from its tokens' bytes, and a character split between
two tokens at a window's edge is dropped there (the overlapping neighbour has it whole).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator.providers import tokens

BLOCK_CHARS = 64 * 1024


@dataclass(frozen=True)
class Piece:
    text: str
    tokens: int


def chunks(text: str, max_tokens: int, overlap: int, encoding=None) -> Iterator[Piece]:
    """The windows of `text`, in order; blank ones are skipped."""
    if not 0 <= overlap <= max_tokens // 2:
        raise ValueError("overlap must be between 0 and half of max_tokens")
    if encoding is None:
        windows = _word_windows(text, max_tokens, overlap)
    else:
        windows = _token_windows(text, max_tokens, overlap, encoding)
    for piece in windows:
        if piece.text.strip():
            yield piece


def _token_windows(text: str, max_tokens: int, overlap: int, encoding) -> Iterator[Piece]:
    def decode(window: list[int]) -> Piece:
        raw = encoding.decode_bytes(window)
        return Piece(raw.decode("utf-8", errors="ignore"), len(window))

    for window in _windows(_token_stream(text, encoding), max_tokens, overlap):
        yield decode(window)


def _token_stream(text: str, encoding) -> Iterator[int]:
    for block in _blocks(text):
        yield from encoding.encode_ordinary(block)


def _word_windows(text: str, max_tokens: int, overlap: int) -> Iterator[Piece]:
    for window in _windows(iter(tokens.word_spans(text)), max_tokens, overlap):
        yield Piece(text[window[0][0] : window[-1][1]], len(window))


def _windows(stream: Iterator, size: int, overlap: int) -> Iterator[list]:
    """Sliding windows over any stream of tokens: `size` long, `size - overlap` apart."""
    buffer: deque = deque()
    emitted = False
    for item in stream:
        buffer.append(item)
        if len(buffer) == size:
            yield list(buffer)
            emitted = True
            for _ in range(size - overlap):
                buffer.popleft()
    if buffer and (not emitted or len(buffer) > overlap):
        yield list(buffer)


def _blocks(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = min(start + BLOCK_CHARS, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end
