"""Embedding one batch at a time in a process: calls that wait meanwhile are served together by the next
batch, each caller gets its own rows, and a failure reaches every caller of its batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from orchestrator.providers.coalescing import Coalescer


class Gate:
    """A `work` that holds its first batch until released, and records every batch and the most batches
    that ever ran at once."""

    def __init__(self, fail_on: str | None = None):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []
        self.running = self.most_running = 0
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def __call__(self, items: list[str]) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        with self._lock:
            self.running -= 1
        if self.fail_on in items:
            raise RuntimeError(f"cannot embed {self.fail_on}")
        return np.array([[len(item)] for item in items])


def call_in_threads(coalescer: Coalescer, calls: list[list[str]], gate: Gate) -> list:
    """The first call starts a batch; the others come while it runs; then the batch is let go."""
    results: list = [None] * len(calls)

    def one(index: int) -> None:
        try:
            results[index] = coalescer.submit(calls[index])
        except RuntimeError as error:
            results[index] = error

    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    assert gate.started.wait(10)
    for index in range(1, len(calls)):
        threads.append(threading.Thread(target=one, args=(index,)))
        threads[-1].start()
    deadline = time.monotonic() + 10
    while coalescer.waiting < len(calls) - 1 and time.monotonic() < deadline:
        time.sleep(0)  # yield until every later call is queued
    gate.release.set()
    for thread in threads:
        thread.join(10)
    return results


def test_calls_that_wait_are_computed_together_in_one_batch_after_the_running_one():
    gate = Gate()
    coalescer = Coalescer(gate, limit=64)
    calls = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "ffffff"]]
    results = call_in_threads(coalescer, calls, gate)
    assert gate.most_running == 1
    assert gate.batches[0] == ["a"]
    assert sorted(gate.batches[1]) == sorted(["bb", "ccc", "dddd", "eeeee", "ffffff"])
    for call, rows in zip(calls, results, strict=True):
        assert rows.ravel().tolist() == [len(item) for item in call]  # each caller its own rows, in order


def test_a_batch_holds_at_most_limit_items_but_always_one_whole_call():
    gate = Gate()
    coalescer = Coalescer(gate, limit=3)
    calls = [["a"], ["b", "c"], ["d", "e"], ["f", "g", "h", "i"]]
    results = call_in_threads(coalescer, calls, gate)
    assert gate.most_running == 1
    assert [len(batch) for batch in gate.batches] == [1, 2, 2, 4]
    assert [rows.ravel().tolist() for rows in results] == [[1], [1, 1], [1, 1], [1, 1, 1, 1]]
    assert coalescer.waiting == 0


def test_a_failure_reaches_every_caller_of_its_batch_and_the_next_batch_still_runs():
    gate = Gate(fail_on="bad")
    coalescer = Coalescer(gate, limit=2)
    calls = [["a"], ["bad"], ["c"], ["dd"]]
    results = call_in_threads(coalescer, calls, gate)
    assert results[0].ravel().tolist() == [1]
    assert isinstance(results[1], RuntimeError) and isinstance(results[2], RuntimeError)  # one batch
    assert results[3].ravel().tolist() == [2]


def test_a_lone_call_computes_at_once_on_its_own_thread():
    seen = []
    coalescer = Coalescer(lambda items: seen.append(threading.get_ident()) or np.zeros((len(items), 1)), 8)
    assert coalescer.submit(["x", "y"]).shape == (2, 1)
    assert seen == [threading.get_ident()]
    with pytest.raises(ZeroDivisionError):
        Coalescer(lambda items: 1 / 0, 8).submit(["x"])


def test_a_caller_killed_while_it_waits_leaves_the_queue_and_the_next_batch_still_runs():
    import subprocess
    import sys

    pytest.importorskip("gevent")
    probe = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent, gevent.event, numpy as np\n"
        "from orchestrator.providers.coalescing import Coalescer\n"
        "gate, batches = gevent.event.Event(), []\n"
        "def work(items):\n"
        "    batches.append(list(items)); gate.wait()\n"
        "    return np.array([[len(item)] for item in items])\n"
        "coalescer = Coalescer(work, 8)\n"
        "first = gevent.spawn(coalescer.submit, ['a']); gevent.sleep(0)\n"
        "killed = gevent.spawn(coalescer.submit, ['bb']); third = gevent.spawn(coalescer.submit, ['ccc'])\n"
        "gevent.sleep(0); killed.kill(); gate.set()\n"
        "print(first.get(timeout=5).tolist(), third.get(timeout=5).tolist(), batches, coalescer.waiting)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[[1]] [[3]] [['a'], ['ccc']] 0"


def test_a_batch_given_too_few_rows_fails_its_callers_and_the_queue_moves_on():
    coalescer = Coalescer(lambda items: np.zeros((len(items) - 1, 1)), 8)
    with pytest.raises(ValueError):
        coalescer.submit(["x", "y"])
    with pytest.raises(ValueError):  # not stuck behind the failed batch
        coalescer.submit(["z", "w"])
    assert coalescer.waiting == 0


def test_a_leader_stopped_mid_batch_fails_its_batch_and_hands_on_the_lead():
    def stopped(items):
        raise KeyboardInterrupt  # as a greenlet's GreenletExit: not an Exception

    coalescer = Coalescer(stopped, 8)
    with pytest.raises(KeyboardInterrupt):
        coalescer.submit(["x"])
    coalescer._work = lambda items: np.ones((len(items), 1))
    assert coalescer.submit(["y"]).shape == (1, 1)  # the queue was handed on, not left busy
