"""Freed heap memory is given back after a batch, from any thread, without starting a process (gevent
cannot watch a child started from its thread pool, where the local embedder computes)."""

from __future__ import annotations

import subprocess
import sys
import threading

from orchestrator.providers import native_memory


def test_freed_memory_is_given_back_where_the_c_library_can(monkeypatch):
    def no_child(*_args, **_kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    native_memory._malloc_trim.cache_clear()
    done = []
    thread = threading.Thread(target=lambda: done.append(native_memory.release_freed()))
    thread.start()
    thread.join(30)
    assert done == [sys.platform.startswith("linux") and native_memory._malloc_trim() is not None]
    assert native_memory.release_freed() is done[0]


def test_only_a_load_past_the_threshold_is_followed_by_a_trim(monkeypatch):
    released = []
    monkeypatch.setattr(native_memory, "release_freed", lambda: released.append(True))
    native_memory.release_after(native_memory.TRIM_BYTES)
    assert released == []
    native_memory.release_after(native_memory.TRIM_BYTES + 1)
    assert released == [True]
