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
import threading
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support import quiet_scenarios
from tests.support.databases import throwaway_database
from tests.support.polling import wait_for
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
            stack.start_worker(concurrency=12)  # every reading's runs at once
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


def read_raw_wire(stack, key: str) -> str:
    client = quiet_scenarios.client_for("openai", "sync", stack.base, key)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}
    )
    url = f"{stack.base}/v1/threads/{run.thread_id}/runs/{run.id}/events"
    body = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=60).text
    client.close()
    return body


def read_responses(stack, key: str) -> dict:
    """A Response streamed across the same silences: the raw wire, then the SDK's `responses.stream`
    helper, sync and async, OpenAI and Azure clients, on a create and on a replay of a background one."""
    import asyncio

    from tests.support.clients import make_async_client, make_client

    body = {"model": "local", "input": "quiet words", "stream": True}
    with httpx.stream(
        "POST",
        stack.base + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        wire = "".join(response.iter_text())
    found: dict = {"wire": wire}
    # A client that goes away after the first event loses nothing: the worker carries on.
    body = {"model": "local", "input": "left behind", "stream": True}
    with httpx.stream(
        "POST",
        stack.base + "/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    left = make_client("openai", stack.base, key, max_retries=0, timeout=60)
    response_id = json.loads(first[6:])["response"]["id"]
    found["left"] = wait_for(
        lambda: (r := left.responses.retrieve(response_id)).status == "completed" and r, 30
    )
    left.close()
    for flavour in ("openai", "azure"):
        client = make_client(flavour, stack.base, key, max_retries=0, timeout=60)
        with client.responses.stream(model="local", input="quiet words") as stream:
            found[f"{flavour}-sync"] = (len(list(stream)), stream.get_final_response().output_text)
        background = client.responses.create(model="local", input="quiet words", background=True)
        with client.responses.stream(response_id=background.id) as stream:
            found[f"{flavour}-replay"] = (len(list(stream)), stream.get_final_response().output_text)
        client.close()

        async def streamed(flavour=flavour) -> tuple[int, str]:
            client = make_async_client(flavour, stack.base, key, max_retries=0, timeout=60)
            async with client.responses.stream(model="local", input="quiet words") as stream:
                count = len([event async for event in stream])
                text = (await stream.get_final_response()).output_text
            await client.close()
            return count, text

        found[f"{flavour}-async"] = asyncio.run(streamed())
    return found


@pytest.fixture(scope="module")
def readings(quiet_stack) -> dict:
    """Every reading of this module at once, as each spends its time waiting through the silences: the raw
    wire, SDK 3.x's four clients (in threads) and SDK 1.x's (in its own interpreter). Each test checks its
    own; what went wrong in one reading is kept for its test to show."""
    assert SDK1_PYTHON.exists(), "./scripts/test makes .venv/sdk1 with openai 1.x; run it once"
    keys = {name: quiet_stack.create_key(name) for name in ("raw", "sdk3", "sdk1", "responses")}
    sdk1 = subprocess.Popen(
        [str(SDK1_PYTHON), str(Path(quiet_scenarios.__file__)), quiet_stack.base, keys["sdk1"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",  # nothing of this checkout on its path but the script itself
    )
    found: dict = {}

    def read(name, call):
        try:
            found[name] = call()
        except Exception as error:  # shown by the test that needs this reading
            found[name] = error

    readers = [
        threading.Thread(target=read, args=("raw", lambda: read_raw_wire(quiet_stack, keys["raw"]))),
        threading.Thread(
            target=read, args=("sdk3", lambda: quiet_scenarios.run_all(quiet_stack.base, keys["sdk3"]))
        ),
        threading.Thread(
            target=read, args=("responses", lambda: read_responses(quiet_stack, keys["responses"]))
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        stdout, stderr = sdk1.communicate(timeout=120)
        found["sdk1"] = (sdk1.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        sdk1.kill()
        found["sdk1"] = (None, "", "SDK 1.x's scenarios did not end within 120 s")
    for reader in readers:
        reader.join(120)
    return found


def reading(readings: dict, name: str):
    value = readings.get(name)
    if isinstance(value, Exception):
        raise value
    assert value is not None, f"the {name} reading did not end"
    return value


def test_a_quiet_stream_really_carries_keep_alives_on_the_wire(readings):
    body = reading(readings, "raw")
    assert body.count(": keep-alive\n") >= 2, body[:400]
    assert ": keep-alive\n\n" not in body  # never an empty line of its own (contract §4.6)


def test_every_sdk_client_reads_every_kind_of_stream_to_its_end_across_long_silences(readings):
    assert_read_to_the_end(reading(readings, "sdk3"))


def test_sdk_1x_reads_every_kind_of_stream_to_its_end_across_long_silences(readings):
    returncode, stdout, stderr = reading(readings, "sdk1")
    assert returncode == 0, stderr[-2000:]
    report = json.loads(stdout)
    assert report["sdk"].startswith("1.")
    assert_read_to_the_end(report["results"])


def test_a_quiet_response_stream_keeps_alive_with_comment_blocks_the_sdk_reads_as_nothing(readings):
    found = reading(readings, "responses")
    wire = found.pop("wire")
    assert found.pop("left").output_text == "You said: left behind"
    assert wire.count(": keep-alive\n\n") >= 2, wire[:400]
    assert not any(line.startswith("id:") for line in wire.splitlines())  # contract §7.1, trap T2
    assert sorted(found) == sorted(
        f"{f}-{m}" for f in ("openai", "azure") for m in ("sync", "replay", "async")
    )
    for name, (count, text) in found.items():
        assert text == "You said: quiet words" and count >= 10, name
