"""Enqueue runs and ingestions on the Celery broker by task name (the API never imports the workers package).

Three queues, named after the runs' (`ORCHESTRATOR_CELERY_QUEUE`): runs on it, chunk sets to ingest on
`<queue>.ingest` (consumed by each worker's ingestion process, a few at a time), the sweeps on
`<queue>.sweep` (consumed beside the runs): 10,000 files to ingest never stand in front of a run or a sweep.
"""

from __future__ import annotations

from celery import Celery

from orchestrator.adapters import kombu_redis
from orchestrator.adapters.broker import check_broker, queue_depth

ADVANCE_RUN = "orchestrator.advance_run"
INGEST = "orchestrator.ingest"
SWEEP = "orchestrator.sweep"


def ingest_queue(queue: str) -> str:
    return f"{queue}.ingest"


def sweep_queue(queue: str) -> str:
    return f"{queue}.sweep"


class CeleryQueue:
    def __init__(self, celery: Celery, queue: str, redis_client, broker_url: str):
        self._celery = celery
        self._queue = queue
        self._redis = redis_client
        self._url = broker_url

    def depth(self) -> int | None:
        return queue_depth(self._redis, self._queue)

    def ingestion_depth(self) -> int | None:
        return queue_depth(self._redis, ingest_queue(self._queue))

    def check(self) -> None:
        check_broker(self._url)

    def enqueue(self, run_id: str) -> None:
        self._celery.send_task(ADVANCE_RUN, args=[run_id], queue=self._queue)

    def enqueue_ingestion(self, chunk_set_id: str) -> None:
        self._celery.send_task(INGEST, args=[chunk_set_id], queue=ingest_queue(self._queue))


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
