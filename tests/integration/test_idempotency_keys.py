"""Idempotency keys against a real Postgres: the key's row goes in with the request's change, in the same
transaction, so a crash on either side of the commit leaves the key free or its outcome stored; expiry
and the sweep."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid

import pytest
from sqlalchemy import func, select

from orchestrator.api import idempotent
from orchestrator.api.app import create_app
from orchestrator.db import idempotency_keys, models
from orchestrator.domain.errors import IdempotencyKeyTaken, InvalidRequest
from orchestrator.engine import sweeper
from orchestrator.schemas.assistants import CreateAssistant
from orchestrator.schemas.runs import CreateThreadAndRun
from orchestrator.schemas.threads import CreateThread, ModifyThread
from orchestrator.services import assistants, idempotency, runs, threads
from orchestrator.services.idempotency import KeyState, Outcome, RequestKey
from orchestrator.services.keys import create_key


def carried(tenant: str, body: bytes = b"{}") -> RequestKey:
    return RequestKey(tenant, "k-" + uuid.uuid4().hex, idempotency.request_hash("POST", "/v1/x", body))


@contextlib.contextmanager
def carrying(key: RequestKey):
    """What the API does around a view: the request's commits carry its key."""
    token = idempotency_keys.bind(key)
    try:
        yield key
    finally:
        idempotency_keys.unbind(token)


def look_up(ctx, key: RequestKey):
    return idempotency.look_up(ctx, key.tenant_id, key.key, key.request_hash)


def thread_and_run(ctx, tenant) -> dict:
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    body = CreateThreadAndRun.model_validate({"assistant_id": assistant["id"]})
    return runs.create_thread_and_run(ctx, tenant, body).run


def test_a_run_created_with_a_key_stores_its_answer_in_its_own_transaction(ctx, tenant):
    """The process dies right after the commit, before the response is stored: the retry gets that run."""
    key = carried(tenant)
    with carrying(key):
        run = thread_and_run(ctx, tenant)
    assert key.recorded
    stored = look_up(ctx, key)  # no `settle`: the response was never stored
    assert stored.outcome.state == KeyState.COMPLETED and stored.outcome.status == 200
    assert json.loads(stored.outcome.body)["id"] == run["id"]


def test_a_request_that_dies_before_its_commit_leaves_its_key_free_at_once(ctx, tenant):
    assistant = assistants.create(ctx, tenant, CreateAssistant(model="local"))
    choice = {"type": "code_interpreter"}  # the assistant has no such tool
    refused = CreateThreadAndRun.model_validate({"assistant_id": assistant["id"], "tool_choice": choice})
    key = carried(tenant)
    with carrying(key), pytest.raises(InvalidRequest):
        runs.create_thread_and_run(ctx, tenant, refused)  # fails in its transaction, before the commit
    assert not key.recorded and look_up(ctx, key) is None


def test_a_change_that_does_not_know_its_answer_leaves_the_key_pending_until_it_is_settled(ctx, tenant):
    made = threads.create(ctx, tenant, CreateThread())
    key = carried(tenant)
    with carrying(key):
        threads.modify(ctx, tenant, made["id"], ModifyThread.model_validate({"metadata": {"a": "1"}}))
    assert look_up(ctx, key).outcome.state == KeyState.PENDING
    answer = Outcome(KeyState.COMPLETED, 200, '{"id": "x"}', {"Content-Type": "application/json"})
    assert idempotency.settle(ctx, key, answer)
    assert look_up(ctx, key).outcome == answer


def test_concurrent_requests_with_one_key_make_one_change_and_the_others_roll_back(ctx, tenant):
    key_name, hashed = "k-" + uuid.uuid4().hex, idempotency.request_hash("POST", "/v1/assistants", b"{}")
    name, results, barrier = uuid.uuid4().hex, [], threading.Barrier(4)

    def request() -> None:
        with carrying(RequestKey(tenant, key_name, hashed)):
            barrier.wait()
            try:
                results.append(
                    assistants.create(ctx, tenant, CreateAssistant(model="local", name=name))["id"]
                )
            except IdempotencyKeyTaken:
                results.append("taken")

    racers = [threading.Thread(target=request) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    made = [result for result in results if result != "taken"]
    assert len(made) == 1 and results.count("taken") == 3
    with ctx.uow() as uow:
        count = uow.session.scalar(
            select(func.count()).select_from(models.Assistant).where(models.Assistant.name == name)
        )
    assert count == 1
    stored = idempotency.look_up(ctx, tenant, key_name, hashed)
    assert json.loads(stored.outcome.body)["id"] == made[0]


def test_an_error_of_a_request_that_lost_the_key_to_another_is_not_stored(ctx, tenant):
    first, second = carried(tenant), None
    with carrying(first):
        thread_and_run(ctx, tenant)
    second = RequestKey(tenant, first.key, first.request_hash)  # a retry that got a 400 of its own
    assert not idempotency.settle(ctx, second, Outcome(KeyState.COMPLETED, 400, "{}", {}))
    assert look_up(ctx, first).outcome.status == 200


def test_the_same_key_for_another_request_is_refused(ctx, tenant):
    key = carried(tenant, b"1")
    assert idempotency.settle(ctx, key, Outcome(KeyState.COMPLETED, 200, "{}", {}))
    for other in (("POST", "/v1/x", b"2"), ("POST", "/v1/y", b"1")):
        with pytest.raises(InvalidRequest, match="same parameters"):
            idempotency.look_up(ctx, tenant, key.key, idempotency.request_hash(*other))


def test_keys_expire_after_a_day_and_the_sweep_deletes_them(ctx, tenant):
    key = carried(tenant)
    assert idempotency.settle(ctx, key, Outcome(KeyState.COMPLETED, 200, "{}", {}))
    ctx.clock.offset += idempotency.TTL - 60
    sweeper.sweep_idempotency_keys(ctx)  # (other tests' keys in this database may go; not this one)
    assert look_up(ctx, key) is not None
    ctx.clock.offset += 120
    sweeper.sweep(ctx)  # the scheduler's sweep does it
    assert look_up(ctx, key) is None


def test_an_expired_key_not_yet_swept_is_a_new_key(ctx, tenant):
    key = carried(tenant)
    assert idempotency.settle(ctx, key, Outcome(KeyState.COMPLETED, 200, "{}", {}))
    ctx.clock.offset += idempotency.TTL + 1
    other = RequestKey(tenant, key.key, idempotency.request_hash("POST", "/v1/other", b""))
    assert look_up(ctx, other) is None
    with carrying(other):
        thread_and_run(ctx, tenant)
    assert look_up(ctx, other).outcome.status == 200


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\nb"])
def test_a_malformed_key_is_refused(key):
    with pytest.raises(InvalidRequest):
        idempotency.check_key(key)


def test_a_retry_waits_for_a_pending_outcome_then_hears_it_is_in_use_or_lost(ctx, monkeypatch):
    """A `pending` row is a change committed without its response stored: while young its request is still
    answering (409, retry); older, its process died (409 lost, which the SDK must not retry)."""
    monkeypatch.setattr(idempotent, "WAIT", 0.2)
    tenant, api_key = create_key(ctx, "pending-keys")
    client = create_app(ctx.settings, ctx).test_client()
    made = threads.create(ctx, tenant, CreateThread())
    body = b'{"metadata": {"a": "1"}}'
    path = f"/v1/threads/{made['id']}"
    for age, code, retry in (
        (1, "idempotency_key_in_use", None),
        (60, "idempotency_key_outcome_lost", "false"),
    ):
        key = RequestKey(tenant, "k-" + uuid.uuid4().hex, idempotency.request_hash("POST", path, body))
        ctx.clock.offset -= age
        with carrying(key):  # the request's change, committed; its process dies before answering
            threads.modify(ctx, tenant, made["id"], ModifyThread.model_validate({"metadata": {"a": "1"}}))
        ctx.clock.offset += age
        headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key.key}
        retried = client.post(path, data=body, headers=headers, content_type="application/json")
        assert (retried.status_code, retried.json["error"]["code"]) == (409, code)
        assert retried.headers.get("x-should-retry") == retry
