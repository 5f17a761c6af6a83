"""One chat completions or embeddings call, measured: its outcome, its tokens in and out, and how long it
took (a stream: until its last byte), labelled by tenant, API and model, and one log line when it ends."""

from __future__ import annotations

import time

from orchestrator.observability import logs
from orchestrator.observability.metrics import instruments

log = logs.get("orchestrator.model_api")
# A client that went away before the end (nginx's word for it).
CLIENT_CLOSED = 499


class Call:
    def __init__(self, tenant_id: str, api: str, model: str):
        self.labels = (tenant_id, api, model)
        self.started = time.perf_counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ended = False

    def tokens(self, prompt: int, completion: int = 0) -> None:
        self.prompt_tokens, self.completion_tokens = prompt, completion

    def end(self, status: int) -> None:
        """Count the call once, however many ways it ends (an error after a disconnect, a close after)."""
        if self.ended:
            return
        self.ended = True
        elapsed = time.perf_counter() - self.started
        metrics = instruments()
        metrics.model_api_requests.labels(*self.labels, str(status)).inc()
        metrics.model_api_latency.labels(*self.labels).observe(elapsed)
        for direction, count in (("in", self.prompt_tokens), ("out", self.completion_tokens)):
            if count:
                metrics.model_api_tokens.labels(*self.labels, direction).inc(count)
        tenant_id, api, model = self.labels
        log.info(
            "model call",
            tenant_id=tenant_id,
            api=api,
            model=model,
            status=status,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            ms=round(elapsed * 1000, 1),
        )
