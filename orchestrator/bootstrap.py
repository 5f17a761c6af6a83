"""Composition root for the production adapters: Postgres, Redis, Celery."""

from __future__ import annotations

from orchestrator.adapters.celery_queue import CeleryQueue, producer_app
from orchestrator.adapters.rate_limit import RedisRateLimiter
from orchestrator.adapters.redis_bus import RedisBus, make_redis
from orchestrator.adapters.redis_hub import Hub
from orchestrator.adapters.redis_signals import RedisSignals
from orchestrator.context import Context
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.settings import Settings


def build_context(settings: Settings, *, pool_size: int | None = None) -> Context:
    engine = make_engine(settings, pool_size=pool_size or settings.db_pool_size)
    client = make_redis(settings.redis_url)
    return Context(
        settings=settings,
        sessions=make_sessionmaker(engine),
        queue=CeleryQueue(
            producer_app(settings.redis_url), settings.celery_queue, client, settings.redis_url
        ),
        bus=RedisBus(client, settings.delta_replay_seconds),
        hub=Hub(client),
        signals=RedisSignals(client, settings.redis_url),
        rate_limiter=RedisRateLimiter(client),
    )
