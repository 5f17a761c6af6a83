"""Durability with real processes: SIGKILLed workers, Redis restarted empty, several workers, expiry."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx2 as httpx
import openai
import pytest
import redis
import sqlalchemy as sa

from tests.e2e.conftest import FAST_FAILOVER, sdk
from tests.support.polling import wait_for, wait_for_run_to_settle
from tests.support.sse import watch_in_background

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

LONG = "word " * 60


def assistant_message_count(client, thread_id, run_id):
    return len(client.beta.threads.messages.list(thread_id, run_id=run_id).data)


def test_a_worker_killed_mid_reply_is_replaced_and_the_turn_is_not_doubled(make_stack):
    stack = make_stack(
        workers=1,
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40",
        **FAST_FAILOVER,
    )
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": LONG}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    url = f"{stack.base}/v1/threads/{thread.id}/runs/{run.id}/events"
    auth = {"Authorization": f"Bearer {client.api_key}"}
    lines, watcher = watch_in_background(url, auth)
    # Wait until part of the reply was streamed, then kill the worker and all its children.
    wait_for(lambda: len(streamed_text("\n".join(lines))) > 20)
    stack.processes["worker0"].kill()
    killed_at = time.monotonic()
    stack.start_worker("worker1")
    final = wait_for_run_to_settle(client, thread.id, run.id)
    took = time.monotonic() - killed_at
    assert final.status == "completed", stack.logs()
    assert took < 2 * 2 + 10  # two lease periods, plus worker start-up and the reply itself
    messages = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert len(messages) == 1 and LONG.strip() in messages[0].content[0].text.value
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [(s.type, s.status) for s in steps] == [("message_creation", "completed")]
    # The new worker relays the reply only from where the dead one stopped: neither a watcher connected
    # throughout nor one replaying afterwards sees any text twice.
    watcher.join(60)
    final_text = messages[0].content[0].text.value
    assert streamed_text("\n".join(lines)) == final_text
    assert streamed_text(httpx.get(url, headers=auth, timeout=30).text) == final_text


def streamed_text(body: str) -> str:
    text = ""
    for line in body.splitlines():
        if line.startswith("data: {") and '"thread.message.delta"' in line:
            for part in json.loads(line[6:])["delta"].get("content", []):
                text += part.get("text", {}).get("value", "")
    return text


def test_two_workers_share_the_load_without_duplicates(make_stack):
    stack = make_stack(workers=2, concurrency=2, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="5")
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    started = []
    for index in range(16):
        run = client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": f"job {index}"}]}
        )
        started.append(run)
    for run in started:
        final = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=50)
        assert final.status == "completed"
        assert assistant_message_count(client, run.thread_id, run.id) == 1
        assert len(client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data) == 1
    logs = [stack.processes[name].log.read_text() for name in ("worker0", "worker1")]
    assert all("orchestrator.advance_run" in log for log in logs), "both workers should have taken runs"


def test_redis_restarted_empty_loses_no_run_and_reads_keep_working(make_stack, fault_redis_proc):
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(
        workers=0,
        redis=redis_url,
        ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5",
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="25",
    )
    client = sdk(stack)
    tool = {"type": "function", "function": {"name": "lookup"}}
    assistant = client.beta.assistants.create(model="local", tools=[tool])
    stack.start_worker("worker0", concurrency=1)
    waiting = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "lookup"}]},
        poll_interval_ms=50,
    )
    assert waiting.status == "requires_action"
    # One run in progress on the only worker slot, and queued runs whose messages wait in Redis behind it.
    running = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "long " * 150}]}
    )
    wait_for(
        lambda: (
            client.beta.threads.runs.retrieve(running.id, thread_id=running.thread_id).status == "in_progress"
        )
    )
    queued = [
        client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": f"q{i}"}]}
        )
        for i in range(4)
    ]

    fault_redis_proc.stop()
    assert client.beta.threads.runs.retrieve(queued[0].id, thread_id=queued[0].thread_id).status == "queued"
    assert client.beta.threads.messages.list(queued[0].thread_id).data
    try:
        during = client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "during outage"}]}
        )
        queued.append(during)  # accepted: it must run later
    except openai.APIStatusError as error:
        assert error.status_code == 503  # refused: and then it must not exist
    fault_redis_proc.start()  # empty: every queued task message is gone

    call_id = waiting.required_action.submit_tool_outputs.tool_calls[0].id
    client.beta.threads.runs.submit_tool_outputs(
        waiting.id, thread_id=waiting.thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "fine"}]
    )
    for run in [running, *queued, waiting]:
        final = wait_for_run_to_settle(client, run.thread_id, run.id)
        assert final.status == "completed", stack.logs()
        assert assistant_message_count(client, run.thread_id, run.id) == 1


def test_a_waiting_run_expires_and_a_late_submit_is_refused(make_stack):
    stack = make_stack(
        workers=1, ORCHESTRATOR_RUN_EXPIRES_SECONDS="10", ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5"
    )
    client = sdk(stack, "azure")
    tool = {"type": "function", "function": {"name": "lookup"}}
    assistant = client.beta.assistants.create(model="local", tools=[tool])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "lookup"}]},
        poll_interval_ms=50,
    )
    assert run.status == "requires_action"
    # The poll helper stops at requires_action, so wait by hand; the run must expire by itself.
    final = wait_for(
        lambda: (
            (r := client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)).status
            != "requires_action"
            and r
        ),
        timeout=25,
        interval=0.2,
    )
    assert final.status == "expired" and final.required_action is None
    call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
    with pytest.raises(openai.BadRequestError) as error:
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "late"}]
        )
    assert error.value.body["message"] == 'Runs in status "expired" do not accept tool outputs.'
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data
    assert [s.status for s in steps] == ["expired"]


def test_cancel_stops_a_streaming_model_within_a_second(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="50")
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": LONG}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    wait_for(lambda: client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data)
    asked = time.monotonic()
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    final = wait_for(
        lambda: (
            (r := client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status == "cancelled" and r
        ),
        timeout=10,
        interval=0.02,
    )
    assert time.monotonic() - asked < 1.5
    message = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert message.status == "incomplete" and message.incomplete_details.reason == "run_cancelled"
    assert 0 < len(message.content[0].text.value) < len(LONG)
    assert final.cancelled_at


def test_healthz_reports_redis_loss(make_stack, fault_redis_proc):
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(workers=0, scheduler=False, redis=redis_url)
    assert httpx.get(stack.base + "/healthz").status_code == 200
    fault_redis_proc.stop()
    try:
        response = httpx.get(stack.base + "/healthz", timeout=10)
        assert response.status_code == 503 and response.json()["error"]["message"]
    finally:
        fault_redis_proc.start()


def test_an_idempotent_create_retried_across_an_api_sigkill_makes_one_run(make_stack, fault_redis_proc):
    """As the soak ran it: the api is SIGKILLed after the request's transaction committed, before its
    response (held there by its enqueue, with Redis pausing writes); the client retries with its key on the
    restarted api and gets that run, not a second one, and the run still completes."""
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(
        redis=redis_url, ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2", ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5"
    )
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    database = sa.create_engine(stack.env["DATABASE_URL"])
    runs_made = sa.text("SELECT count(*) FROM runs")
    headers = {"Idempotency-Key": f"soak-{time.monotonic_ns()}"}

    def create():
        return client.beta.threads.create_and_run(
            assistant_id=assistant.id,
            thread={"messages": [{"role": "user", "content": "once"}]},
            extra_headers=headers,
        )

    paused = redis.Redis.from_url(redis_url)
    paused.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        first = threading.Thread(target=_quietly, args=(create,), daemon=True)
        first.start()
        with database.connect() as connection:
            wait_for(lambda: connection.execute(runs_made).scalar() == 1, timeout=10, interval=0.01)
        stack.processes["api"].kill()
        stack.processes["api"].stop()
    finally:
        paused.execute_command("CLIENT", "UNPAUSE")
    first.join(10)
    stack.start_api()
    retried = create()
    final = wait_for_run_to_settle(client, retried.thread_id, retried.id)
    assert final.status == "completed", final.last_error
    with database.connect() as connection:
        assert connection.execute(runs_made).scalar() == 1
        assert connection.execute(sa.text("SELECT count(*) FROM threads")).scalar() == 1
    database.dispose()


def _quietly(call) -> None:
    with contextlib.suppress(Exception):  # the api dies under it: the connection is cut
        call()


def test_two_schedulers_on_one_host_each_keep_sweeping(make_stack):
    """Each scheduler keeps its beat schedule to itself, in memory: two on one host (or two stacks' on one
    machine) used to share one schedule file in the temporary directory."""
    stack = make_stack(workers=0, ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.2")
    stack.start("scheduler2", "scheduler")
    schedulers = [stack.processes["scheduler"], stack.processes["scheduler2"]]

    def sweeps(process) -> int:
        return process.log.read_text(errors="replace").count("Sending due task sweep")

    wait_for(lambda: all(sweeps(process) >= 10 for process in schedulers), timeout=30)
    assert all(process.popen.poll() is None for process in schedulers), stack.logs()
    for process in schedulers:
        banner = process.log.read_text(errors="replace")
        assert "scheduler -> workers.celery_app.SweepingAtStart" in banner and ". db ->" not in banner, banner
        assert "Traceback" not in banner, process.tail()
