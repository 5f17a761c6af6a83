"""Reading a model's stream so that a cancel is honoured even while the model is silent.

The stream is read on a pump thread (a greenlet in a worker process) into an inbox; the turn takes chunks
from the inbox and is woken by the lease hold when the run is cancelled or the lease lost, at which point
the model's response is closed (`abort`) and the pump ends by itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from orchestrator.db.keeper import Hold
from orchestrator.domain.model import Chunk, ModelProvider, ModelRequest

_END, _WAKE = object(), object()


def read(model: ModelProvider, request: ModelRequest, hold: Hold) -> Iterator[Chunk]:
    """The model's chunks until it ends, or until `hold` says the turn must stop (then nothing more)."""
    inbox: queue.Queue = queue.Queue()
    stop = threading.Event()
    hold.on_signal = lambda: inbox.put(_WAKE)
    pump = threading.Thread(
        target=_pump, args=(model, request, inbox, stop), name="model-reader", daemon=True
    )
    pump.start()
    while True:
        item = inbox.get()
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
