"""A least-recently-used map within a budget of bytes: what search keeps in each process's memory (vectors,
postings, the indexes merged from them). It holds nothing the database does not, so losing an entry costs
only the next load."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class BudgetCache:
    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep `value` as the most recently used; the least recently used go past the budget (a value
        larger than the whole budget is not kept)."""
        with self._lock:
            if key in self._entries or nbytes > self.budget:
                return
            self._entries[key] = (value, nbytes)
            self._used += nbytes
            while self._used > self.budget:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._used -= dropped

    @property
    def used(self) -> int:
        return self._used
