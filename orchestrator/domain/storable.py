"""The one rule for text the product did not write itself (a model's reply and tool calls, a tool's output):
what Postgres cannot store becomes U+FFFD, the Unicode replacement character.

Postgres' `text` cannot hold U+0000 and its `jsonb` refuses the `\\u0000` escape; neither can hold a lone
surrogate (a code point in U+D800–U+DFFF, which is not valid UTF-8). JSON allows all of these in a string,
so a model or a program can send them; the API refuses them in what clients send (api/validation.py), and
the engine stores everything else with each such code point replaced: the stream, the stored step and
message, and what the next model call reads all say the same. See docs/robustness.md.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with every U+0000 and lone surrogate replaced by U+FFFD (itself when it has none, at the cost
    of two scans in C for ASCII text)."""
    if "\x00" not in text and text.isascii():
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def storable_json(value: Any) -> Any:
    """A JSON value with `storable` applied to every string in it, keys included."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value
