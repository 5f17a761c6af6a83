"""Metrics about the whole deployment, computed when Prometheus scrapes an API process.

Every API host reports the same values (they come from the shared Postgres and Redis): aggregate them with
`max`, not `sum`, or scrape them from one host.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily

from orchestrator.adapters.celery_queue import ingest_queue
from orchestrator.context import Context
from orchestrator.services import stats

log = logging.getLogger(__name__)


class StateCollector:
    def __init__(self, ctx: Context):
        self._ctx = ctx

    def collect(self):
        up = GaugeMetricFamily(
            "orchestrator_state_up", "1 when the scrape could read this source, else 0.", labels=["source"]
        )
        yield from self._runs(up)
        yield from self._queue(up)
        yield up

    def _runs(self, up: GaugeMetricFamily):
        try:
            totals = stats.run_totals(self._ctx)
        except Exception:
            log.warning("metrics: could not count runs", exc_info=True)
            up.add_metric(["postgres"], 0)
            return
        up.add_metric(["postgres"], 1)
        runs = GaugeMetricFamily(
            "orchestrator_runs",
            "Runs stored (a thread's runs and responses), by API and status.",
            labels=["api", "status"],
        )
        for (api, status), count in totals.by_status.items():
            runs.add_metric([api, status], count)
        yield runs

    def _queue(self, up: GaugeMetricFamily):
        try:
            depth = stats.waiting_tasks(self._ctx)
        except Exception:
            log.warning("metrics: could not read the queue depth", exc_info=True)
            up.add_metric(["redis"], 0)
            return
        if depth is None:
            return
        up.add_metric(["redis"], 1)
        queue = GaugeMetricFamily(
            "orchestrator_queue_depth", "Tasks waiting in the Celery queue.", labels=["queue"]
        )
        queue.add_metric([self._ctx.settings.celery_queue], depth)
        ingesting = self._ctx.queue.ingestion_depth()
        if ingesting is not None:
            queue.add_metric([ingest_queue(self._ctx.settings.celery_queue)], ingesting)
        yield queue
