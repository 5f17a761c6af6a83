"""The floor the benchmark compares against: a bare Celery no-op task on the same Redis, with the same
reliability settings the engine uses (acks_late, prefetch 1, prefork)."""

import os

import redis
from celery import Celery

app = Celery("bench_noop", broker=os.environ["REDIS_URL"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="bench_noop",
    broker_connection_retry_on_startup=True,
)
_client = None


@app.task(name="bench.noop")
def noop() -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    _client.incr("bench:noop:done")
