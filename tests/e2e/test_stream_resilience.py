"""Streams beyond the hosted API: keep-alives, resume after a cut, many watchers, Redis restarts."""

from __future__ import annotations

import threading
import time

import httpx2 as httpx
import pytest

from tests.e2e.conftest import sdk
from tests.support.polling import wait_for
from tests.support.sse import watch_in_background

pytestmark = [pytest.mark.e2e]


def parse(body: str) -> list[tuple[int, str]]:
    events = []
    for chunk in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in chunk.split("\n") if ": " in line and not line.startswith(":")
        )
        if "id" in fields:
            events.append((int(fields["id"]), fields["event"]))
    return events


def parse_lines(lines: list[str]) -> list[tuple[int, str]]:
    ids = [int(line[4:]) for line in lines if line.startswith("id: ")]
    names = [line[7:] for line in lines if line.startswith("event: ") and line != "event: done"]
    return list(zip(ids, names, strict=True))


def events_url(stack, run) -> str:
    return f"{stack.base}/v1/threads/{run.thread_id}/runs/{run.id}/events"


def headers(client) -> dict:
    return {"Authorization": f"Bearer {client.api_key}"}


def test_a_quiet_stream_gets_keep_alive_comments_then_the_run(make_stack):
    stack = make_stack(workers=0, ORCHESTRATOR_KEEPALIVE_SECONDS="0.3")
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "quiet"}]}
    )
    lines, watcher = watch_in_background(events_url(stack, run), headers(client), timeout=30)
    wait_for(lambda: lines.count(": keep-alive") >= 3, timeout=10)
    stack.start_worker("worker0")  # the run was waiting for a worker; the same stream now carries it
    watcher.join(30)
    assert lines[-1] == "data: [DONE]"
    assert "event: thread.run.completed" in lines


def test_a_stream_cut_mid_reply_resumes_after_its_last_event_with_no_gap(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="20")
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "resume " * 60}]}
    )
    first: list[str] = []
    with httpx.stream("GET", events_url(stack, run), headers=headers(client), timeout=30) as response:
        for line in response.iter_lines():
            first.append(line)
            if sum(line.startswith("event: thread.message.delta") for line in first) >= 10:
                break  # the client goes away mid-reply
    before = parse("\n".join(first) + "\n\n")
    last_id = before[-1][0]
    second = httpx.get(
        events_url(stack, run), headers={**headers(client), "Last-Event-ID": str(last_id)}, timeout=60
    ).text
    after = parse(second)
    full = parse(httpx.get(events_url(stack, run), headers=headers(client), timeout=30).text)
    assert before + after == full
    assert full[-1][1] == "thread.run.completed"
    ids = [seq for seq, _ in full]
    assert ids == sorted(set(ids))


def test_many_watchers_on_one_run_see_the_same_events(make_stack):
    stack = make_stack(workers=1, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="10")
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "fan out " * 20}]}
    )
    bodies: list[str] = []

    def watch():
        bodies.append(httpx.get(events_url(stack, run), headers=headers(client), timeout=60).text)

    watchers = [threading.Thread(target=watch) for _ in range(20)]
    for watcher in watchers:
        watcher.start()
    for watcher in watchers:
        watcher.join()
    parsed = [parse(body) for body in bodies]
    assert len(parsed) == 20 and all(p == parsed[0] for p in parsed)
    assert parsed[0][-1][1] == "thread.run.completed"
    assert sum(name == "thread.message.delta" for _, name in parsed[0]) > 10


def test_a_watcher_survives_a_redis_restart_and_misses_no_lifecycle_event(make_stack, fault_redis_proc):
    redis_url = f"redis://{fault_redis_proc.host}:{fault_redis_proc.port}/0"
    stack = make_stack(
        workers=1, redis=redis_url, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="40", ORCHESTRATOR_KEEPALIVE_SECONDS="1"
    )
    client = sdk(stack)
    assistant = client.beta.assistants.create(model="local")
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "outage " * 80}]}
    )
    lines, watcher = watch_in_background(events_url(stack, run), headers(client))
    wait_for(lambda: "event: thread.message.delta" in lines, timeout=20)
    fault_redis_proc.stop()
    time.sleep(1.5)
    fault_redis_proc.start()
    watcher.join(90)
    assert lines[-1] == "data: [DONE]", stack.logs()
    seen = parse_lines(lines)
    final = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
    assert final.status == "completed"
    lifecycle = [
        e
        for e in parse(httpx.get(events_url(stack, run), headers=headers(client), timeout=30).text)
        if not e[1].endswith(".delta")
    ]
    assert [e for e in seen if not e[1].endswith(".delta")] == lifecycle
    ids = [seq for seq, _ in seen]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize("flavour", ["openai", "azure", "async"])
def test_a_final_event_committed_but_never_published_still_ends_the_sdk_stream(make_stack, flavour):
    """A writer that commits a run's end and dies before publishing it: the SDK's stream, quiet meanwhile,
    finds the end in the log within a keep-alive interval and ends there, as it would live."""
    import asyncio
    import json

    import sqlalchemy as sa

    from tests.support.clients import make_async_client

    stack = make_stack(workers=0, scheduler=False, ORCHESTRATOR_KEEPALIVE_SECONDS="1")
    client = sdk(stack, "azure" if flavour == "azure" else "openai")
    assistant = client.beta.assistants.create(model="local")
    thread = {"messages": [{"role": "user", "content": "hello"}]}
    seen: dict = {}

    def read_sync():
        with client.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=thread) as stream:
            seen["events"] = [event.event for event in stream]
            seen["run"] = stream.current_run

    async def read_async():
        aclient = make_async_client("openai", stack.base, client.api_key, max_retries=0, timeout=30)
        async with aclient.beta.threads.create_and_run_stream(
            assistant_id=assistant.id, thread=thread
        ) as stream:
            seen["events"] = [event.event async for event in stream]
            seen["run"] = stream.current_run

    reader = threading.Thread(target=read_sync if flavour != "async" else lambda: asyncio.run(read_async()))
    reader.start()
    engine = sa.create_engine(stack.env["DATABASE_URL"])
    try:
        # No worker: the run waits queued, its stream quiet but for keep-alives.
        def the_run():
            with engine.connect() as connection:
                return connection.execute(sa.text("SELECT id FROM runs")).scalar()

        run_id = wait_for(the_run, timeout=10)
        time.sleep(1.5)
        with engine.begin() as connection:
            row = connection.execute(
                sa.text(
                    "UPDATE runs SET status = 'cancelled', cancelled_at = extract(epoch from now())::int,"
                    " lifecycle_prev = lifecycle_seq, lifecycle_seq = event_seq + 1, event_seq = event_seq + 1"
                    " WHERE id = :id RETURNING tenant_id, lifecycle_seq, cancelled_at"
                ),
                {"id": run_id},
            ).one()
            queued = connection.execute(
                sa.text("SELECT data FROM run_events WHERE run_id = :id AND event = 'thread.run.queued'"),
                {"id": run_id},
            ).scalar()
            data = {**queued, "status": "cancelled", "cancelled_at": row.cancelled_at}
            connection.execute(
                sa.text(
                    "INSERT INTO run_events (run_id, seq, tenant_id, event, data, created_at)"
                    " VALUES (:id, :seq, :tenant, 'thread.run.cancelled', CAST(:data AS jsonb), :now)"
                ),
                {
                    "id": run_id,
                    "seq": row.lifecycle_seq,
                    "tenant": row.tenant_id,
                    "data": json.dumps(data),
                    "now": time.time(),
                },
            )
        reader.join(15)
        assert not reader.is_alive(), "the stream never ended"
    finally:
        engine.dispose()
    assert seen["events"][-1] == "thread.run.cancelled"
    assert seen["run"].status == "cancelled"
