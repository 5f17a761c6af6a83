"""Streams that stay quiet for several keep-alive intervals, read with the SDK's own helpers.

A real model can think for tens of seconds before its first token. The local model stands in for it with a
first-token pause of several keep-alive intervals and a per-word delay longer than one, so keep-alive
comments arrive before the first event of every leg and between the words. Every kind of stream is read to
its end (create with `stream`, submit with `stream`, the attach endpoint) by the sync and async clients of
both flavours, with this venv's SDK (3.x) and with SDK 1.x under its own interpreter.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support import quiet_scenarios
from tests.support.databases import throwaway_database
from tests.support.processes import Stack

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
# Made by ./scripts/test: a virtual environment with the last 1.x release of the SDK.
SDK1_PYTHON = ROOT / ".venv" / "sdk1" / "bin" / "python"
# Keep-alives go out on the stream ticker's one-second beat once a stream has been quiet this long.
QUIET = {
    "ORCHESTRATOR_KEEPALIVE_SECONDS": "0.5",
    "ORCHESTRATOR_LOCAL_MODEL_FIRST_TOKEN_MS": "2200",
    "ORCHESTRATOR_LOCAL_MODEL_DELAY_MS": "1050",
}


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory, redis_url):
    with throwaway_database() as database:
        workdir = tmp_path_factory.mktemp("quiet")
        stack = Stack(
            database, redis_url, workdir, ORCHESTRATOR_CELERY_QUEUE=f"quiet_{workdir.name}", **QUIET
        )
        try:
            stack.start_api()
            stack.start_worker(concurrency=8)
            stack.start_scheduler()
            yield stack
        finally:
            stack.stop()


def assert_read_to_the_end(results: dict[str, dict]) -> None:
    assert sorted(results) == sorted(f"{flavour}-{mode}" for flavour, mode in quiet_scenarios.SCENARIOS)
    for name, seen in results.items():
        assert "error" not in seen, f"{name}: {seen['error']}"
        assert seen["first_status"] == "requires_action", name
        assert seen["first_last_event"] == "thread.run.requires_action", name
        assert seen["final_status"] == "completed", name
        assert "sunny" in seen["reply"], name
        assert seen["second_deltas"] >= 2, name
        assert seen["second_last_event"] == "thread.run.completed", name
        assert seen["attached_first"] == ["thread.created", "thread.run.created"], name
        assert seen["attached_last"] == "thread.run.completed", name


def test_a_quiet_stream_really_carries_keep_alives_on_the_wire(quiet_stack):
    key = quiet_stack.create_key("raw")
    client = quiet_scenarios.client_for("openai", "sync", quiet_stack.base, key)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}
    )
    url = f"{quiet_stack.base}/v1/threads/{run.thread_id}/runs/{run.id}/events"
    body = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=60).text
    assert body.count(": keep-alive\n") >= 2, body[:400]
    assert ": keep-alive\n\n" not in body  # never an empty line of its own (contract §4.6)
    client.close()


def test_every_sdk_client_reads_every_kind_of_stream_to_its_end_across_long_silences(quiet_stack):
    results = quiet_scenarios.run_all(quiet_stack.base, quiet_stack.create_key("sdk3"))
    assert_read_to_the_end(results)


def test_sdk_1x_reads_every_kind_of_stream_to_its_end_across_long_silences(quiet_stack):
    assert SDK1_PYTHON.exists(), "./scripts/test makes .venv/sdk1 with openai 1.x; run it once"
    script = Path(quiet_scenarios.__file__)
    out = subprocess.run(
        [str(SDK1_PYTHON), str(script), quiet_stack.base, quiet_stack.create_key("sdk1")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",  # nothing of this checkout on its path but the script itself
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["sdk"].startswith("1.")
    assert_read_to_the_end(report["results"])
