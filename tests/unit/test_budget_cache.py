"""BudgetCache.built: one build per key, and a slow build holds up no other key."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.files.budget_cache import BudgetCache


class _Blocked:
    """A build that starts, then waits for `release`; counts its calls."""

    def __init__(self, value: str):
        self.value, self.calls = value, 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        return self.value, 10


def test_concurrent_callers_of_one_key_share_its_build():
    cache = BudgetCache(1 << 20)
    build = _Blocked("value")
    started, release = build.started, build.release

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(cache.built, "k", build)
        assert started.wait(10)
        others = [pool.submit(cache.built, "k", build) for _ in range(3)]
        release.set()
        assert [f.result(10) for f in [first, *others]] == ["value"] * 4
    assert build.calls == 1
    assert cache._builds == {}  # nothing left behind per key


def test_a_slow_build_holds_up_no_other_key():
    cache = BudgetCache(1 << 20)
    slow = _Blocked("slow")
    started, release = slow.started, slow.release

    with ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(cache.built, "a", slow)
        assert started.wait(10)
        # Built while "a" is still building: with one lock for all keys this would wait for `release`.
        assert pool.submit(cache.built, "b", lambda: ("fast", 10)).result(10) == "fast"
        assert not blocked.done()
        release.set()
        assert blocked.result(10) == "slow"
    assert cache.get("a") == "slow" and cache.get("b") == "fast"
    assert cache._builds == {}


def test_a_failed_build_leaves_the_key_buildable():
    cache = BudgetCache(1 << 20)

    def broken():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        cache.built("k", broken)
    assert cache._builds == {}
    assert cache.built("k", lambda: ("value", 1)) == "value"
