"""Live run events over Redis pub/sub, plus a short replay buffer for deltas (which are not in Postgres)."""

from __future__ import annotations

import json

import redis


def channel(run_id: str) -> str:
    return f"orch:run:{run_id}"


def delta_key(run_id: str) -> str:
    return f"orch:run:{run_id}:deltas"


class RedisBus:
    def __init__(self, client: redis.Redis, replay_seconds: int):
        self._redis = client
        self._ttl = replay_seconds

    def publish(self, run_id: str, events: list[dict]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.publish(channel(run_id), json.dumps(event, separators=(",", ":")))
        pipe.execute()

    def publish_delta(self, run_id: str, event: dict) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(delta_key(run_id), payload)
        pipe.expire(delta_key(run_id), self._ttl)
        pipe.publish(channel(run_id), payload)
        pipe.execute()

    def deltas(self, run_id: str, start: int = 0, stop: int = -1) -> list[dict]:
        try:
            return [json.loads(entry) for entry in self._redis.lrange(delta_key(run_id), start, stop)]
        except redis.RedisError:
            return []

    def delta_count(self, run_id: str) -> int:
        try:
            return int(self._redis.llen(delta_key(run_id)))
        except redis.RedisError:
            return 0

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30, retry_on_timeout=False
    )
