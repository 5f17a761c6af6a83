"""A background Response survives what a run survives: a worker SIGKILLed mid-reply, Redis restarted
empty, Postgres restarted. Each completes once (one message item), and its stream, watched live through
the SDK or replayed afterwards, is the same gapless sequence."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.db.migrate import upgrade
from tests.e2e.conftest import FAST_FAILOVER, sdk
from tests.support.pgcluster import UNSAFE_AND_FAST, PostgresCluster
from tests.support.polling import wait_for
from tests.support.processes import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

LONG = " ".join(f"w{n}" for n in range(80))
REPLY = f"You said: {LONG}"


def watch(client, response_id: str) -> tuple[list, threading.Thread]:
    """The response's stream read through the SDK's helper in the background, from `response.created`."""
    seen: list = []

    def read() -> None:
        with client.responses.stream(response_id=response_id) as stream:
            for event in stream:
                seen.append(event)
            seen.append(stream.get_final_response())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return seen, reader


def wait_done(client, response_id: str, timeout: float = 60):
    return wait_for(
        lambda: (r := client.responses.retrieve(response_id)).status not in ("queued", "in_progress") and r,
        timeout=timeout,
        interval=0.1,
    )


def check_once(client, final, seen: list | None = None) -> None:
    """One message item with the whole reply; every reader's stream the same gapless sequence."""
    assert final.status == "completed", final.error
    assert [item.type for item in final.output] == ["message"] and final.output_text == REPLY
    with client.responses.stream(response_id=final.id) as stream:
        replayed = list(stream)
        assert stream.get_final_response().output_text == REPLY
    numbers = [event.sequence_number for event in replayed]
    assert numbers == list(range(len(numbers)))
    assert "".join(e.delta for e in replayed if e.type == "response.output_text.delta") == REPLY
    if seen is not None:
        *events, got = seen
        assert got.output_text == REPLY
        assert [_key(e) for e in events] == [_key(e) for e in replayed]


def _key(event) -> tuple:
    """What tells two events apart: their number, type, item and text."""
    return tuple(
        getattr(event, name, None) for name in ("sequence_number", "type", "item_id", "delta", "text")
    )


def test_a_worker_killed_mid_reply_hands_the_response_over_and_the_stream_stays_one(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40", **FAST_FAILOVER)
    client = sdk(stack)
    created = client.responses.create(model="local", input=LONG, background=True)
    seen, reader = watch(client, created.id)
    wait_for(lambda: sum(getattr(e, "type", "") == "response.output_text.delta" for e in seen) > 10)
    stack.processes["worker0"].kill()
    stack.start_worker("worker1")
    final = wait_done(client, created.id)
    reader.join(30)
    check_once(client, final, seen)


def test_redis_restarted_empty_loses_no_response(make_stack, fault_redis_proc):
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(
        workers=0,
        redis=redis_url,
        ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5",
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="25",
    )
    client = sdk(stack)
    stack.start_worker("worker0", concurrency=1)
    running = client.responses.create(model="local", input=LONG, background=True)
    wait_for(lambda: client.responses.retrieve(running.id).status == "in_progress")
    queued = [client.responses.create(model="local", input=LONG, background=True) for _ in range(3)]
    fault_redis_proc.stop()
    assert client.responses.retrieve(queued[0].id).status == "queued"  # reads need no Redis
    fault_redis_proc.start()  # empty: the queued responses' task messages are gone
    for response in [running, *queued]:
        check_once(client, wait_done(client, response.id))


def test_a_postgres_restart_mid_reply_loses_nothing_and_doubles_nothing(redis_url, tmp_path):
    cluster = PostgresCluster(settings=UNSAFE_AND_FAST)
    cluster.start()
    try:
        url = cluster.create_database("responses")
        upgrade(url)
        stack = Stack(
            url,
            redis_url,
            tmp_path,
            ORCHESTRATOR_CELERY_QUEUE="response_outage",
            ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40",
            ORCHESTRATOR_REQUEUE_AFTER_SECONDS="2",
            **FAST_FAILOVER,
        )
        try:
            stack.start_api()
            stack.start_worker("worker0", concurrency=4)
            stack.start_scheduler()
            client = sdk(stack)
            created = [client.responses.create(model="local", input=LONG, background=True) for _ in range(3)]
            wait_for(lambda: all(client.responses.retrieve(r.id).output for r in created), timeout=30)
            cluster.stop("fast")  # every backend goes: the workers' writes fail mid-reply
            time.sleep(1.0)
            cluster.start()
            for response in created:
                check_once(client, wait_done(client, response.id, timeout=90))
        finally:
            stack.stop()
    finally:
        cluster.remove()


def test_a_background_response_past_its_expiry_ends_failed_and_says_so(make_stack):
    stack = make_stack(
        workers=1,
        ORCHESTRATOR_RUN_EXPIRES_SECONDS="3",
        ORCHESTRATOR_SWEEP_INTERVAL_SECONDS="0.5",
        ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="200",
    )
    client = sdk(stack)
    # The worker is up once a response completes: one made while its processes still start may expire first.
    wait_for(lambda: client.responses.create(model="local", input="up?").status == "completed", timeout=60)
    created = client.responses.create(model="local", input=LONG, background=True)
    final = wait_done(client, created.id, timeout=30)
    assert final.status == "failed" and final.error.code == "server_error", final
    assert "expired" in final.error.message
    [message] = final.output  # what it had said stays, ended incomplete
    assert message.status == "incomplete" and 0 < len(final.output_text) < len(REPLY)
    with client.responses.stream(response_id=created.id) as stream:
        events = list(stream)
    assert events[-1].type == "response.failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
