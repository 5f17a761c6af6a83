"""The broker transport both Celery apps use: kombu's Redis transport with one synchronous client per
channel, against a real redis-server."""

from __future__ import annotations

import redis

from orchestrator.adapters import kombu_redis
from orchestrator.adapters.celery_queue import CeleryQueue, producer_app
from orchestrator.settings import Settings
from workers.celery_app import create_celery


def test_enqueues_reach_the_queue_through_one_client(redis_url):
    app = producer_app(redis_url)
    queue = CeleryQueue(app, "kombu-test", redis.Redis.from_url(redis_url), redis_url)
    created = []
    original = kombu_redis.kombu_redis.Channel._create_client

    def counting(self, asynchronous=False):
        created.append(asynchronous)
        return original(self, asynchronous)

    kombu_redis.kombu_redis.Channel._create_client = counting
    try:
        for _ in range(20):
            queue.enqueue("run_x")
    finally:
        kombu_redis.kombu_redis.Channel._create_client = original
    assert redis.Redis.from_url(redis_url).llen("kombu-test") == 20
    assert created.count(False) <= 1  # kombu itself made a new client for each of the 20
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, kombu_redis.Transport)
    redis.Redis.from_url(redis_url).delete("kombu-test")


def test_ingestions_go_to_a_queue_of_their_own_whose_depth_is_read(redis_url):
    client = redis.Redis.from_url(redis_url)
    queue = CeleryQueue(producer_app(redis_url), "kombu-own", client, redis_url)
    try:
        queue.enqueue_ingestion("cs_x")
        queue.enqueue_ingestion("cs_y")
        assert (queue.depth(), queue.ingestion_depth()) == (0, 2)
        assert client.llen("kombu-own.ingest") == 2
    finally:
        client.delete("kombu-own.ingest")


def test_the_workers_app_uses_the_same_transport(redis_url):
    app = create_celery(Settings(redis_url=redis_url))
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, kombu_redis.Transport)


def test_other_schemes_keep_kombus_own_choice_so_tls_stays_on():
    assert kombu_redis.transport_for("redis://127.0.0.1:6379/0") == kombu_redis.NAME
    assert kombu_redis.transport_for("rediss://127.0.0.1:6380/0?ssl_cert_reqs=none") is None
    app = producer_app("rediss://127.0.0.1:6380/0?ssl_cert_reqs=none")
    connection = app.connection_for_write()
    assert connection.ssl  # TLS, as kombu itself sets it for rediss://
    assert not isinstance(connection.transport, kombu_redis.Transport)
