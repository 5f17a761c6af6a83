"""Waiting for a condition in end-to-end tests, with a deadline."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """The first truthy value of `predicate()`, or AssertionError once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def wait_for_run_to_settle(client, thread_id: str, run_id: str, timeout: float = 60.0):
    """The run, once it is neither queued nor in progress (finished, or waiting for tool outputs)."""

    def settled():
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        return run if run.status not in {"queued", "in_progress"} else None

    return wait_for(settled, timeout=timeout, interval=0.1)
