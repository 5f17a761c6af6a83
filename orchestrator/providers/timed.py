"""A provider wrapper that measures model latency: time to the first chunk, and the whole stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

from orchestrator.domain.model import Chunk, ModelProvider, ModelRequest
from orchestrator.observability.metrics import instruments


class Timed:
    """Wraps a provider; everything but `stream` (e.g. the upstream's `abort`) reaches the inner one."""

    def __init__(self, inner: ModelProvider, kind: str):
        self._inner, self._kind = inner, kind

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def stream(self, request: ModelRequest) -> Iterator[Chunk]:
        metrics = instruments()
        started = time.perf_counter()
        outcome, first = "ok", True
        stream = self._inner.stream(request)
        try:
            for chunk in stream:
                if first:
                    metrics.model_first_chunk.labels(self._kind).observe(time.perf_counter() - started)
                    first = False
                yield chunk
        except GeneratorExit:
            outcome = "stopped"  # the turn stopped reading: cancelled, or the lease was lost
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            metrics.model_latency.labels(self._kind, outcome).observe(time.perf_counter() - started)
