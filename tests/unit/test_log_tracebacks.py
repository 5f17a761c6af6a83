"""An error's log shows where it happened, never the values its frames held (settings, keys, content)."""

from __future__ import annotations

import sys

import pytest

from orchestrator.observability import logs


def fail(api_key: str) -> None:
    raise ValueError("the upstream refused")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_logged_traceback_names_the_frames_but_not_their_local_values(log_format):
    secret = "-".join(["sk", "secret", "value", "123"])  # not in the source, which a traceback may quote
    try:
        fail(secret)
    except ValueError:
        event: object = {"event": "unhandled error", "exc_info": sys.exc_info()}
    for processor in logs._renderer(log_format):
        event = processor(None, "error", event)
    assert isinstance(event, str)
    assert "the upstream refused" in event and "fail" in event
    assert "sk-secret-value-123" not in event
