"""One computation at a time for many callers, the callers that wait meanwhile served together by the next.

The ingestion process embeds several chunk sets at once (ORCHESTRATOR_INGEST_CONCURRENCY), each a call of
a text or two for a small file. Run side by side, each call holds its own activations, its own bfloat16
copies of the weights (autocast's cache is per thread) and its own malloc arena: about 300 MB over the
model's own in the ingestion process (issue 23). Run one at a time, with the texts of every call that came
meanwhile joined into one batch, memory holds one batch's worth and the model computes fewer, fuller
batches, which on these CPUs is not slower than side by side.

No thread of its own: the first caller to find the work idle computes (the leader); callers that come
meanwhile wait; when its batch is done the leader hands the next batch's lead to the oldest waiting
caller and returns. Plain `threading` primitives, so under gevent (patched) waiting is cooperative.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


class _Call:
    def __init__(self, items: Sequence[Any]):
        self.items = items
        self.done = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None


class Coalescer:
    """`submit(items)` runs `work` over the items of it and of every call waiting with it (at most `limit`
    items a batch, but never fewer than one whole call), one batch at a time, and returns its own rows of
    `work`'s result (anything sliceable by rows, such as a numpy array)."""

    def __init__(self, work: Callable[[list[Any]], Any], limit: int):
        self._work = work
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._busy = False

    @property
    def waiting(self) -> int:
        """Calls queued for a batch that has not started."""
        with self._lock:
            return len(self._waiting)

    def submit(self, items: Sequence[Any]) -> Any:
        call = _Call(items)
        with self._lock:
            self._waiting.append(call)
            call.leads = not self._busy
            self._busy = True
        if not call.leads:
            try:
                call.done.wait()
            except BaseException:  # killed while waiting (a greenlet): the queue must not wait on it
                self._abandon(call)
                raise
        if call.leads:  # idle when it came, or handed the lead while it waited
            self._lead()
        if call.error is not None:
            raise call.error
        return call.result

    def _lead(self) -> None:
        with self._lock:
            batch = self._take()
        try:
            result = self._work([item for call in batch for item in call.items])
            if len(result) != sum(len(call.items) for call in batch):
                raise ValueError(f"{len(result)} results for {sum(len(c.items) for c in batch)} items")
            start = 0
            for call in batch:
                call.result = result[start : start + len(call.items)]
                start += len(call.items)
        except Exception as error:  # every caller of the batch sees the failure, as a lone call would
            for call in batch:
                call.error = error
        except BaseException:  # this caller was stopped (a killed greenlet): the others fail, not exit
            for call in batch:
                call.error = RuntimeError("the call computing this batch was stopped")
            raise
        finally:  # whatever happened, the batch's callers wake and the queue moves on
            for call in batch:
                call.leads = False
                call.done.set()
            self._hand_on()

    def _hand_on(self) -> None:
        """The oldest waiting call leads the next batch; none waiting, the next call to come will."""
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            self._busy = following is not None
            if following is not None:
                following.leads = True
        if following is not None:
            following.done.set()

    def _abandon(self, call: _Call) -> None:
        with self._lock:
            if call not in self._waiting:
                return  # in a batch being computed: its leader finishes it
            self._waiting.remove(call)
            handed = call.leads
        if handed:  # it was given the lead and will not take it
            self._hand_on()

    def _take(self) -> list[_Call]:
        """The oldest waiting calls, as many as fit in `limit` items (the first one whatever its size)."""
        taken = [self._waiting.pop(0)]
        size = len(taken[0].items)
        while self._waiting and size + len(self._waiting[0].items) <= self._limit:
            size += len(self._waiting[0].items)
            taken.append(self._waiting.pop(0))
        return taken
