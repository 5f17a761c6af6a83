"""A least-recently-used map within a budget of bytes: what search keeps in each process's memory (vectors,
postings, the indexes merged from them). It holds nothing the database does not, so losing an entry costs
only the next load."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class BudgetCache:
    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        # Key → (its build's lock, the threads using it): one build per key, any number of keys at once.
        self._builds: dict[Hashable, tuple[threading.Lock, int]] = {}

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

    def built(self, key: Hashable, build: Callable[[], tuple[Any, int]]) -> Any:
        """The entry for `key`, made by `build` (the value and its bytes) when missing. One build per key:
        concurrent searches of a changed store wait for it rather than repeat it, and a long build (a
        million chunks' first load) holds up no search of another store."""
        found = self.get(key)
        if found is not None:
            return found
        with self._building(key):
            found = self.get(key)
            if found is not None:
                return found
            value, nbytes = build()
            self.put(key, value, nbytes)
            return value

    @contextmanager
    def _building(self, key: Hashable) -> Iterator[None]:
        with self._lock:
            lock, users = self._builds.get(key, (threading.Lock(), 0))
            self._builds[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._builds[key]
                if users == 1:
                    del self._builds[key]
                else:
                    self._builds[key] = (lock, users - 1)

    @property
    def used(self) -> int:
        return self._used


def mask(position: dict[str, int], count: int, allowed: Collection[str]) -> np.ndarray:
    """A boolean per part of something built from `count` parts (`position`: part → its place): the parts in
    `allowed`. What filters make of a merged index or stacked matrix."""
    kept = np.zeros(count, dtype=bool)
    kept[[position[key] for key in allowed if key in position]] = True
    return kept


class PerProcess(Generic[T]):
    """This process's cache of one kind, one per budget (in practice one): `cache(budget_mb)`."""

    def __init__(self, make: Callable[[int], T]):
        self._make = make
        self._made: dict[int, T] = {}
        self._lock = threading.Lock()

    def __call__(self, budget_mb: int) -> T:
        with self._lock:
            if budget_mb not in self._made:
                self._made[budget_mb] = self._make(budget_mb * 1024 * 1024)
            return self._made[budget_mb]

    def clear(self) -> None:
        """Forget what was kept, as a new process would start (tests)."""
        with self._lock:
            self._made.clear()
