"""Tenants share the workers: one tenant's flood does not hold up another's run, and `--max-active-runs` is
never exceeded. Through the SDK, against the real processes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.support.clients import make_client

pytestmark = [pytest.mark.e2e]

# 20 words at 100 ms: each reply streams for about 2 s.
TEXT = " ".join(f"w{i}" for i in range(18))


def sql(stack, query: str, *params):
    url = stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def tenant_client(stack, name: str):
    return make_client("openai", stack.base, stack.create_key(name), max_retries=0, timeout=60)


def create_runs(client, count: int) -> list:
    assistant = client.beta.assistants.create(model="local")

    def one(_index):
        return client.beta.threads.create_and_run(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": TEXT}]}
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_one_tenants_flood_does_not_hold_up_another_tenants_run(make_stack):
    stack = make_stack(
        workers=1, concurrency=8, ORCHESTRATOR_TENANT_WINDOW="4", ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="100"
    )
    flood, other = tenant_client(stack, "flood"), tenant_client(stack, "other")
    flooded = create_runs(flood, 40)  # ten windows' worth: the FIFO would hold ~10 s of work ahead
    started = time.monotonic()
    (mine,) = create_runs(other, 1)
    final = other.beta.threads.runs.poll(mine.id, thread_id=mine.thread_id, poll_interval_ms=100)
    waited = time.monotonic() - started
    assert final.status == "completed"
    unfinished = sum(
        flood.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id).status != "completed"
        for run in flooded
    )
    assert unfinished >= 20, f"the other tenant's run only finished after most of the flood ({waited:.1f} s)"
    assert waited < 8  # one reply (2 s) and a few polls, not the flood's ~10 s


def test_a_tenant_never_has_more_runs_working_than_its_max_active_runs(make_stack):
    stack = make_stack(workers=1, concurrency=8, ORCHESTRATOR_LOCAL_MODEL_DELAY_MS="50")
    stack.create_key("limited")
    stack.cli("tenants", "set", "limited", "--max-active-runs", "2")
    client = tenant_client(stack, "limited")
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            (count,) = sql(stack, "SELECT count(*) FROM runs WHERE status IN ('in_progress', 'cancelling')")[
                0
            ]
            peak[0] = max(peak[0], count)
            time.sleep(0.03)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = create_runs(client, 6)
        finals = [
            client.beta.threads.runs.poll(r.id, thread_id=r.thread_id, poll_interval_ms=100) for r in started
        ]
    finally:
        stop.set()
        sampler.join()
    assert [f.status for f in finals] == ["completed"] * 6
    assert peak[0] == 2  # both places used, never a third
