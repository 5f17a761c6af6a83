"""Idempotency keys against a real Postgres: claims, replays, expiry and the sweep."""

from __future__ import annotations

import pytest

from orchestrator.domain.errors import InvalidRequest
from orchestrator.engine import sweeper
from orchestrator.services import idempotency
from orchestrator.services.idempotency import KeyState, Record


def test_a_key_is_claimed_once_then_replays_what_its_request_stored(ctx, tenant):
    hashed = idempotency.request_hash("POST", "/v1/threads", b"{}")
    assert idempotency.claim(ctx, tenant, "k1", hashed) is None
    assert idempotency.claim(ctx, tenant, "k1", hashed).state == KeyState.PENDING
    idempotency.complete(ctx, tenant, "k1", Record(KeyState.COMPLETED, 200, '{"id":"thread_1"}', {}))
    assert idempotency.claim(ctx, tenant, "k1", hashed) == Record(
        KeyState.COMPLETED, 200, '{"id":"thread_1"}', {}
    )


def test_the_same_key_for_another_request_is_refused(ctx, tenant):
    assert idempotency.claim(ctx, tenant, "k2", idempotency.request_hash("POST", "/a", b"1")) is None
    for other in (("POST", "/a", b"2"), ("POST", "/b", b"1")):
        with pytest.raises(InvalidRequest, match="same parameters"):
            idempotency.claim(ctx, tenant, "k2", idempotency.request_hash(*other))


def test_a_released_key_is_claimed_anew_by_the_retry(ctx, tenant):
    hashed = idempotency.request_hash("POST", "/a", b"")
    assert idempotency.claim(ctx, tenant, "k3", hashed) is None
    idempotency.release(ctx, tenant, "k3")
    assert idempotency.claim(ctx, tenant, "k3", hashed) is None


def test_keys_expire_after_a_day_and_the_sweep_deletes_them(ctx, tenant):
    hashed = idempotency.request_hash("POST", "/a", b"")
    assert idempotency.claim(ctx, tenant, "k4", hashed) is None
    idempotency.complete(ctx, tenant, "k4", Record(KeyState.COMPLETED, 200, "{}", {}))
    ctx.clock.offset += idempotency.TTL - 60
    sweeper.sweep_idempotency_keys(
        ctx
    )  # (other tests' keys in this database may go; this one is not old enough)
    assert idempotency.find(ctx, tenant, "k4") is not None
    ctx.clock.offset += 120
    sweeper.sweep(ctx)  # the scheduler's sweep does it
    assert idempotency.find(ctx, tenant, "k4") is None
    assert idempotency.claim(ctx, tenant, "k4", idempotency.request_hash("POST", "/other", b"")) is None


def test_an_expired_key_not_yet_swept_is_a_new_key(ctx, tenant):
    assert idempotency.claim(ctx, tenant, "k5", idempotency.request_hash("POST", "/a", b"")) is None
    ctx.clock.offset += idempotency.TTL + 1
    assert idempotency.claim(ctx, tenant, "k5", idempotency.request_hash("POST", "/b", b"")) is None


def test_a_claim_abandoned_by_a_dead_process_is_taken_over_after_a_minute(ctx, tenant):
    hashed = idempotency.request_hash("POST", "/a", b"")
    assert idempotency.claim(ctx, tenant, "k6", hashed) is None
    ctx.clock.offset += idempotency.ABANDONED_AFTER - 5
    assert idempotency.claim(ctx, tenant, "k6", hashed).state == KeyState.PENDING
    ctx.clock.offset += 10
    assert idempotency.claim(ctx, tenant, "k6", hashed) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\nb"])
def test_a_malformed_key_is_refused(key):
    with pytest.raises(InvalidRequest):
        idempotency.check_key(key)
