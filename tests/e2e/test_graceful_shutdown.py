"""Stopping processes with SIGTERM, as docker and systemd do: nothing is lost and nothing is doubled."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx2 as httpx
import pytest

from tests.e2e.conftest import FAST_FAILOVER, sdk
from tests.support.polling import wait_for, wait_for_run_to_settle

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

LONG = "word " * 60


def start_long_run(client):
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": LONG}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    # The reply is being written once its step exists.
    wait_for(lambda: client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data)
    return thread, run


def inspect(stack, client, run_id: str) -> dict:
    response = httpx.get(
        stack.base + f"/ui/api/runs/{run_id}", headers={"Authorization": f"Bearer {client.api_key}"}
    )
    assert response.status_code == 200
    return response.json()


def assert_one_reply(client, thread_id: str, run_id: str) -> None:
    messages = client.beta.threads.messages.list(thread_id, run_id=run_id).data
    assert len(messages) == 1 and LONG.strip() in messages[0].content[0].text.value
    steps = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]


def test_sigterm_mid_turn_lets_the_worker_finish_the_turn_before_it_exits(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40")
    client = sdk(stack)
    thread, run = start_long_run(client)
    worker = stack.processes["worker0"]
    os.kill(worker.popen.pid, signal.SIGTERM)  # the main process only, as docker's init forwards it
    assert worker.popen.wait(30) == 0, worker.tail()
    # Celery's warm shutdown waited for the turn: it is over by the time the worker has exited.
    final = client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
    assert final.status == "completed", stack.logs()
    assert_one_reply(client, thread.id, run.id)
    assert inspect(stack, client, run.id)["internals"]["takeovers"] == 0


def test_a_worker_stopped_past_its_grace_period_hands_the_turn_to_another(make_stack):
    stack = make_stack(
        workers=1,
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40",
        **FAST_FAILOVER,
    )
    client = sdk(stack)
    thread, run = start_long_run(client)
    worker = stack.processes["worker0"]
    os.kill(worker.popen.pid, signal.SIGTERM)
    time.sleep(0.5)
    worker.kill(signal.SIGKILL)  # the grace period ran out: the whole process group dies mid-turn
    stack.start_worker("worker1")
    final = wait_for_run_to_settle(client, thread.id, run.id)
    assert final.status == "completed", stack.logs()
    assert_one_reply(client, thread.id, run.id)
    assert inspect(stack, client, run.id)["internals"]["takeovers"] >= 1


def read_frames(lines, frames: list, stop_after: int | None = None) -> list[str]:
    """Collect (id, event, data) frames and comments until the stream ends or `stop_after` frames."""
    comments, current = [], {}
    for line in lines:
        if line.startswith(":"):
            comments.append(line)
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = line[6:]
        elif line == "" and current:
            frames.append(current)
            current = {}
            if stop_after is not None and len(frames) >= stop_after:
                break
    return comments


def test_sigterm_on_the_api_ends_open_streams_cleanly_and_clients_resume_without_gaps(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="30", ORCHESTRATOR_KEEPALIVE_SECONDS="1")
    client = sdk(stack)
    thread, run = start_long_run(client)
    url = f"{stack.base}/v1/threads/{thread.id}/runs/{run.id}/events"
    headers = {"Authorization": f"Bearer {client.api_key}"}
    api = stack.processes["api"]
    first: list[dict] = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        lines = response.iter_lines()
        read_frames(lines, first, stop_after=8)
        stopped = time.monotonic()
        os.kill(api.popen.pid, signal.SIGTERM)
        comments = read_frames(lines, first)
    assert time.monotonic() - stopped < 5
    assert any("reconnect" in comment for comment in comments)
    assert first[-1]["event"] != "done"  # ended early on purpose: the client is told to come back
    assert api.popen.wait(30) == 0, api.tail()

    stack.start_api()  # another API process; the client resumes from its last event id
    rest: list[dict] = []
    resume = {**headers, "Last-Event-ID": str(first[-1]["id"])}
    with httpx.stream("GET", url, headers=resume, timeout=30) as response:
        read_frames(response.iter_lines(), rest)
    assert rest[-1]["event"] == "done" and rest[-2]["event"] == "thread.run.completed"
    seqs = [frame["id"] for frame in first + rest if "id" in frame]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    text = "".join(
        part["text"]["value"]
        for frame in first + rest
        if frame["event"] == "thread.message.delta"
        for part in json.loads(frame["data"])["delta"]["content"]
    )
    final = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    assert text == final


def test_the_sdk_reads_a_drained_stream_to_its_cut_and_resumes_it_with_last_event_id(make_stack):
    """The drain frame (`retry:`) ends the SDK's iteration quietly; reattaching from the last id gets the rest."""
    from openai import Stream
    from openai.types.beta import AssistantStreamEvent

    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="30", ORCHESTRATOR_KEEPALIVE_SECONDS="1")
    client = sdk(stack)
    thread, run = start_long_run(client)

    def attach(**headers) -> Stream[AssistantStreamEvent]:
        return client.get(
            f"/threads/{thread.id}/runs/{run.id}/events",
            cast_to=AssistantStreamEvent,
            stream=True,
            stream_cls=Stream[AssistantStreamEvent],
            options={"headers": {"OpenAI-Beta": "assistants=v2", **headers}},
        )

    api = stack.processes["api"]
    stream = attach()
    first, last_id = [], None
    for event in stream:
        first.append(event.event)
        last_id = stream._decoder._last_event_id  # the SDK keeps each event's `id:` there, not on the event
        if len(first) == 8:
            os.kill(api.popen.pid, signal.SIGTERM)
    assert first[-1] != "thread.run.completed"  # cut short, and the SDK raised nothing
    assert api.popen.wait(30) == 0, api.tail()

    stack.start_api()
    rest = [event.event for event in attach(**{"Last-Event-ID": str(last_id)})]
    assert rest[-1] == "thread.run.completed"
    collapsed = [name for name in first + rest if name != "thread.message.delta"]
    assert collapsed == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    text = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text.value
    assert LONG.strip() in text


def test_a_worker_stopped_while_redis_is_down_exits_promptly_and_loses_nothing(make_stack, fault_redis_proc):
    """Redis hung (SIGSTOPped: connections open, nothing answers) while a turn runs: the warm shutdown
    would wait on every ack, publish and message handed back until its timeout; the worker exits within
    seconds instead, and another worker finishes the run."""
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(
        workers=1,
        redis=redis_url,
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40",
        ORCHESTRATOR_LEASE_SECONDS="2",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5",
    )
    client = sdk(stack)
    thread, run = start_long_run(client)
    worker = stack.processes["worker0"]
    redis_pid = fault_redis_proc.process.pid
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        os.kill(worker.popen.pid, signal.SIGTERM)
        stopped = time.monotonic()
        worker.popen.wait(60)
        took = time.monotonic() - stopped
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert took < 12, worker.tail()
    stack.start_worker("worker1")
    final = wait_for_run_to_settle(client, thread.id, run.id)
    assert final.status == "completed", stack.logs()
    assert_one_reply(client, thread.id, run.id)
