"""The vectors of the short texts a process embedded last, so a query asked again skips the model.

A hybrid search embeds its queries, and the reranker then embeds the same query again; agents repeat
searches. Keys are the texts themselves (short ones only: a search's queries), least recently used out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

RECENT_TEXTS = 4096  # 384 float32s each: about 6 MB


class RecentVectors:
    """Texts' vectors, least recently used out. Thread-safe."""

    def __init__(self, size: int = RECENT_TEXTS):
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def embed(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """`texts`' vectors: the ones kept, and `embed` of the others in one call."""
        with self._lock:
            known = {text: self._rows[text] for text in texts if text in self._rows}
            for text in known:
                self._rows.move_to_end(text)
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            fresh = dict(zip(missing, embed(missing), strict=True))
            with self._lock:
                self._rows.update(fresh)
                while len(self._rows) > self._size:
                    self._rows.popitem(last=False)
            known.update(fresh)
        return np.stack([known[text] for text in texts])
