"""Reading a model's stream so that a cancel is honoured even while the model is silent.

The stream is read on a pump thread (a greenlet in a worker process) into an inbox; the turn takes chunks
from the inbox and is woken by the lease hold when the run is cancelled or the lease lost, at which point
the model's response is closed (`abort`) and the pump ends by itself. A writer holding output back (a
Response's deltas wait to be stored in batches) says when it is due, and is flushed then even while the
model is silent.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from orchestrator.db.keeper import Hold
from orchestrator.domain.model import Chunk, ModelProvider, ModelRequest

_END, _WAKE = object(), object()


def read(
    model: ModelProvider,
    request: ModelRequest,
    hold: Hold,
    due: Callable[[], float | None] = lambda: None,
    flush: Callable[[], None] = lambda: None,
) -> Iterator[Chunk]:
    """The model's chunks until it ends, or until `hold` says the turn must stop (then nothing more).
    `due`: seconds until held-back output must go (None: nothing held), when `flush` is called."""
    inbox: queue.Queue = queue.Queue()
    stop = threading.Event()
    hold.on_signal = lambda: inbox.put(_WAKE)
    pump = threading.Thread(
        target=_pump, args=(model, request, inbox, stop), name="model-reader", daemon=True
    )
    pump.start()
    while True:
        try:
            item = inbox.get(timeout=due())
        except queue.Empty:
            flush()
            continue
        if hold.cancelled.is_set() or hold.lost.is_set():
            stop.set()
            abort = getattr(model, "abort", None)
            if abort:
                abort()  # closes the upstream response now; the pump then ends by itself
            return
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        if item is not _WAKE:
            yield item


def _pump(model: ModelProvider, request: ModelRequest, inbox: queue.Queue, stop: threading.Event) -> None:
    stream = model.stream(request)
    try:
        for chunk in stream:
            if stop.is_set():
                break
            inbox.put(chunk)
        inbox.put(_END)
    except Exception as error:
        inbox.put(error)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
