"""Postgres going away under load: every request in flight or arriving meanwhile gets a 503 envelope with
Retry-After from the first millisecond (never a 500), and service resumes when it is back. Its own cluster,
so the machine's shared Postgres is never stopped."""

from __future__ import annotations

import threading
import time

import httpx2 as httpx
import pytest

from orchestrator.db.migrate import upgrade
from tests.support.pgcluster import UNSAFE_AND_FAST, PostgresCluster
from tests.support.processes import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


@pytest.fixture
def cluster():
    cluster = PostgresCluster(settings=UNSAFE_AND_FAST)
    cluster.start()
    yield cluster
    cluster.remove()


def hammer(stack, key: str, stop: threading.Event, seen: list) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=stack.base, headers=auth, timeout=30) as http:
        while not stop.is_set():
            for method, path, body in (("GET", "/v1/assistants", None), ("POST", "/v1/threads", {})):
                try:
                    response = http.request(method, path, json=body)
                except httpx.TransportError as error:
                    seen.append((time.monotonic(), "transport", repr(error)))
                    continue
                seen.append((time.monotonic(), response.status_code, response))


def test_a_postgres_shutdown_mid_load_is_503_envelopes_never_500s_then_service_resumes(
    cluster, redis_url, tmp_path
):
    url = cluster.create_database("outage")
    upgrade(url)
    stack = Stack(url, redis_url, tmp_path, ORCHESTRATOR_CELERY_QUEUE="outage")
    try:
        stack.start_api()
        key = stack.create_key("outage")
        stop, seen = threading.Event(), []
        clients = [threading.Thread(target=hammer, args=(stack, key, stop, seen)) for _ in range(6)]
        for client in clients:
            client.start()
        time.sleep(1.0)
        stopped_at = time.monotonic()
        cluster.stop("fast")  # terminates every backend: requests in flight lose their connection
        time.sleep(1.5)
        cluster.start()
        time.sleep(2.5)
        stop.set()
        for client in clients:
            client.join(30)
    finally:
        stack.stop()
    statuses = {status for _, status, _ in seen}
    outage = [(t, status, r) for t, status, r in seen if t >= stopped_at and status != 200]
    assert 500 not in statuses and "transport" not in statuses, stack.logs()
    assert statuses <= {200, 503} and outage, statuses
    for _, _, response in outage:
        error = response.json()["error"]
        assert error["type"] == "server_error" and response.headers["retry-after"] == "1"
    assert [status for _, status, _ in seen[-12:]] == [200] * 12  # back once Postgres is
