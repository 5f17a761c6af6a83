"""The embedded mode's run queue: a pool of threads in this process that advance runs.

Delivery is at-least-once, like the broker it stands in for: a run id already waiting is not queued twice,
but one that is being worked on can be queued again (the engine's lease makes the repeat harmless). Ids
still waiting when the process stops are lost; the sweeps enqueue those runs again after a restart.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = object()


class LocalQueue:
    def __init__(self, workers: int):
        self._size = workers
        self._ids: queue.Queue = queue.Queue()
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Ingestion (parse, chunk, embed) has threads of its own, so a long parse never delays a run.
        self._ingestions: queue.Queue = queue.Queue()
        self._ingest_threads: list[threading.Thread] = []

    def depth(self) -> int | None:
        return self._ids.qsize()

    def ingestion_depth(self) -> int | None:
        return self._ingestions.qsize()

    def check(self) -> None:
        pass  # it lives in this process

    def enqueue(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._waiting:
                return
            self._waiting.add(run_id)
        self._ids.put(run_id)

    def enqueue_ingestion(self, chunk_set_id: str) -> None:
        self._ingestions.put(chunk_set_id)

    def start_ingestion(self, work: Callable[[str], None], workers: int = 2) -> None:
        """Start the ingestion threads; each chunk set id taken off their queue is passed to `work`."""
        for index in range(workers):
            thread = threading.Thread(
                target=self._serve_ingestions, args=(work,), name=f"ingest-worker-{index}", daemon=True
            )
            thread.start()
            self._ingest_threads.append(thread)

    def _serve_ingestions(self, work: Callable[[str], None]) -> None:
        while (chunk_set_id := self._ingestions.get()) is not _STOP:
            try:
                work(chunk_set_id)
            except Exception:
                # The chunk set keeps its state in the database; the sweeps hand it out again.
                log.exception("ingesting %s failed", chunk_set_id)

    def start(self, work: Callable[[str], None]) -> None:
        """Start the workers; each id taken off the queue is passed to `work`."""
        for index in range(self._size):
            thread = threading.Thread(
                target=self._serve, args=(work,), name=f"run-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float) -> bool:
        """Drop the ids still waiting and let the turns in progress finish, for at most `timeout` seconds;
        True if they all did."""
        while True:
            try:
                self._ids.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._ids.put(_STOP)
        with contextlib.suppress(queue.Empty):
            while True:  # chunk sets not started are found again by the sweeps after a restart
                self._ingestions.get_nowait()
        for _ in self._ingest_threads:
            self._ingestions.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _serve(self, work: Callable[[str], None]) -> None:
        while (run_id := self._ids.get()) is not _STOP:
            with self._lock:
                self._waiting.discard(run_id)
            try:
                work(run_id)
            except Exception:
                # The run keeps its state in the database; the sweeps hand it out again.
                log.exception("advancing run %s failed", run_id)
