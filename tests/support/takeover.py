"""A worker of its own that alone takes a stack's work for a while, with a slow model, to be killed in the
middle of it: the takeover tests of server-side tools."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import Process, Stack

STACK_WORKERS = ("worker0", "worker1")


@contextlib.contextmanager
def only_a_slow_worker(
    stack: Stack, database_url: str, redis_url: str, workdir: Path, first_token_ms: int = 1500
) -> Iterator[Process]:
    """A worker whose local model pauses `first_token_ms` before each reply, the only one taking work
    inside the block (the stack's own workers are paused, and go on after it): kill it there."""
    settings = {**stack.env, "ORCHESTRATOR_LOCAL_MODEL_FIRST_TOKEN_MS": str(first_token_ms)}
    slow = Stack(database_url, redis_url, workdir, **settings)
    for name in STACK_WORKERS:
        stack.processes[name].kill(signal.SIGSTOP)
    try:
        yield slow.start_worker("slow", 4)
    finally:
        for name in STACK_WORKERS:
            stack.processes[name].kill(signal.SIGCONT)
