"""Tenant limits: set and listed with the CLI; over the request rate a 429 envelope with Retry-After, which
the official SDK honours by itself; against the production stack (Redis' counters) and `orchestrator dev`
(the process's own)."""

from __future__ import annotations

import subprocess
import time
import uuid

import openai
import pytest

from tests.conftest import flavour_for, on_both_targets
from tests.support.clients import make_client

pytestmark = [pytest.mark.e2e]


def limited_tenant(server, rate: str) -> str:
    name = "rate-" + uuid.uuid4().hex[:8]
    key = server.create_key(name)
    server.cli("tenants", "set", name, "--requests-per-second", rate, "--max-active-runs", "3")
    return name, key


@on_both_targets
def test_the_cli_sets_and_lists_limits_and_keeps_what_it_is_not_given(server):
    name, _key = limited_tenant(server, "2.5")
    server.cli("tenants", "set", name, "--max-active-runs", "7")
    rows = [line.split("\t") for line in server.cli("tenants", "list").splitlines()]
    assert rows[0] == ["name", "id", "requests_per_second", "max_active_runs", "active_keys"]
    (row,) = [row for row in rows if row[0] == name]
    assert row[2:] == ["2.5", "7", "1"] and row[1].startswith("tenant_")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        server.cli("tenants", "set", "no-such-tenant-" + uuid.uuid4().hex, "--max-active-runs", "1")
    assert "No tenant named" in failed.value.stderr


@on_both_targets
def test_over_the_rate_the_sdk_gets_a_429_with_retry_after(server, request):
    _name, key = limited_tenant(server, "2")
    client = make_client(flavour_for(request), server.base, key, max_retries=0, timeout=30)
    client.beta.threads.create()
    client.beta.threads.create()  # the burst: one second's worth
    with pytest.raises(openai.RateLimitError) as refused:
        client.beta.threads.create()
    response = refused.value.response
    assert 0 < float(response.headers["retry-after-ms"]) <= 500 and response.headers["retry-after"] == "1"
    assert refused.value.code == "rate_limit_exceeded" and refused.value.type == "requests"
    client.close()


@on_both_targets
def test_the_sdk_retries_a_429_by_itself_and_every_call_succeeds_at_the_rate(server):
    _name, key = limited_tenant(server, "4")
    client = make_client("openai", server.base, key, max_retries=8, timeout=30)
    started = time.monotonic()
    threads = [client.beta.threads.create() for _ in range(10)]
    elapsed = time.monotonic() - started
    assert len({t.id for t in threads}) == 10
    assert elapsed >= 1.4  # 4 at once, then 4 a second: the last one no earlier than 1.5 s in
    client.close()


def test_another_tenant_is_not_slowed_by_a_limited_one(stack, api_key):
    _name, key = limited_tenant_on(stack, "1")
    limited = make_client("openai", stack.base, key, max_retries=0, timeout=30)
    free = make_client("openai", stack.base, api_key, max_retries=0, timeout=30)
    limited.beta.threads.create()
    with pytest.raises(openai.RateLimitError):
        limited.beta.threads.create()
    assert all(free.beta.threads.create().id for _ in range(5))
    limited.close()
    free.close()


def limited_tenant_on(stack, rate):
    name = "rate-" + uuid.uuid4().hex[:8]
    key = stack.create_key(name)
    stack.cli("tenants", "set", name, "--requests-per-second", rate)
    return name, key


@pytest.mark.fault
def test_with_redis_down_requests_are_admitted_instead_of_refused(make_stack, fault_redis_proc):
    stack = make_stack(workers=0, scheduler=False, redis=f"redis://127.0.0.1:{fault_redis_proc.port}/0")
    _name, key = limited_tenant_on(stack, "1")
    client = make_client("openai", stack.base, key, max_retries=0, timeout=30)
    client.beta.threads.create()
    with pytest.raises(openai.RateLimitError):
        client.beta.threads.create()
    fault_redis_proc.stop()
    assert all(client.beta.threads.create().id for _ in range(3))  # Postgres is all these need
    client.close()
