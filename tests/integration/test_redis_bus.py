"""The Redis bus batches what a process publishes without reordering it, against a real redis-server."""

from __future__ import annotations

import threading

import redis

from orchestrator.adapters.redis_bus import RedisBus, channel, decode, make_redis
from tests.support.polling import wait_for


def delta(seq: int) -> dict:
    return {"seq": seq, "prev": 0, "event": "thread.message.delta", "data": {"n": seq}}


def subscribe(redis_url: str, run_ids: list[str]):
    pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*(channel(run_id) for run_id in run_ids))
    return pubsub


def drain(pubsub, seen: dict[str, list[int]], until: int) -> None:
    def got_all():
        while (message := pubsub.get_message(timeout=0.05)) is not None:
            run_id = message["channel"].decode().split(":")[2]
            seen.setdefault(run_id, []).append(decode(message["data"])["seq"])
        return sum(len(v) for v in seen.values()) >= until

    wait_for(got_all, timeout=15)


def test_deltas_from_many_turns_at_once_arrive_once_each_and_in_order_per_run(redis_url):
    bus = RedisBus(make_redis(redis_url), 60)
    run_ids = [f"run_batch{i}" for i in range(20)]
    pubsub = subscribe(redis_url, run_ids)

    def turn(run_id: str) -> None:
        for seq in range(1, 101):
            bus.publish_delta(run_id, delta(seq))

    threads = [threading.Thread(target=turn, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen: dict[str, list[int]] = {}
    drain(pubsub, seen, until=2000)
    assert seen == {run_id: list(range(1, 101)) for run_id in run_ids}
    assert all([d["seq"] for d in bus.deltas(run_id)] == list(range(1, 101)) for run_id in run_ids)


def test_a_lifecycle_event_goes_out_after_the_deltas_queued_before_it_and_before_publish_returns(redis_url):
    bus = RedisBus(make_redis(redis_url), 60)
    pubsub = subscribe(redis_url, ["run_order"])
    for seq in range(1, 50):
        bus.publish_delta("run_order", delta(seq))
    bus.publish("run_order", [{"seq": 50, "prev": 49, "event": "thread.run.completed", "data": {}}])
    assert [d["seq"] for d in bus.deltas("run_order")] == list(range(1, 50))  # already in Redis
    seen: dict[str, list[int]] = {}
    drain(pubsub, seen, until=50)
    assert seen["run_order"] == list(range(1, 51))


def test_deltas_are_dropped_not_raised_while_redis_is_away(redis_url):
    bus = RedisBus(make_redis("redis://127.0.0.1:1/0"), 60)  # nothing listens there
    for seq in range(1, 20):
        bus.publish_delta("run_away", delta(seq))  # never raises, never blocks the turn
    wait_for(lambda: bus._quiet_until > 0, timeout=10)
    assert bus.deltas("run_away") == []
