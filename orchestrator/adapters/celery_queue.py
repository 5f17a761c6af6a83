"""Enqueue runs on the Celery broker by task name (the API never imports the workers package)."""

from __future__ import annotations

from celery import Celery

from orchestrator.adapters import kombu_redis
from orchestrator.adapters.broker import check_broker, queue_depth

ADVANCE_RUN = "orchestrator.advance_run"
INGEST = "orchestrator.ingest"


class CeleryQueue:
    def __init__(self, celery: Celery, queue: str, redis_client, broker_url: str):
        self._celery = celery
        self._queue = queue
        self._redis = redis_client
        self._url = broker_url

    def depth(self) -> int | None:
        return queue_depth(self._redis, self._queue)

    def check(self) -> None:
        check_broker(self._url)

    def enqueue(self, run_id: str) -> None:
        self._celery.send_task(ADVANCE_RUN, args=[run_id], queue=self._queue)

    def enqueue_ingestion(self, chunk_set_id: str) -> None:
        self._celery.send_task(INGEST, args=[chunk_set_id], queue=self._queue)


def producer_app(broker_url: str) -> Celery:
    """A Celery app used only to send: short timeouts so a dead broker fails the call fast."""
    app = Celery("orchestrator-producer", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport=kombu_redis.transport_for(broker_url),
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_transport_options={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "socket_timeout": 2,
            "socket_connect_timeout": 2,
        },
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    )
    return app
