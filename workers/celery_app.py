"""The Celery application factory, with the reliability settings at-least-once delivery needs."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.beat import Scheduler
from celery.signals import setup_logging, task_postrun, task_prerun

from orchestrator.adapters import kombu_redis
from orchestrator.adapters.celery_queue import ADVANCE_RUN, INGEST, SWEEP, ingest_queue, sweep_queue
from orchestrator.observability import logs
from orchestrator.settings import Settings

_state: dict = {}


def create_celery(settings: Settings) -> Celery:
    app = Celery("orchestrator", broker=settings.redis_url, set_as_current=True)
    app.conf.update(
        task_acks_late=True,  # a task a dying worker held is delivered again
        task_reject_on_worker_lost=True,
        # Twice the pool: under gevent the consumer polls Redis only while its prefetch window has room,
        # and once the window is full it next looks after a fixed 2 s wait, however soon a turn ends. With
        # room for twice the pool it keeps polling; spawning into a full pool blocks the consumer, so at
        # most one task waits here beyond those running, and the others stay in Redis for other workers.
        worker_prefetch_multiplier=2,
        task_default_queue=settings.celery_queue,
        task_routes={
            INGEST: {"queue": ingest_queue(settings.celery_queue)},
            SWEEP: {"queue": sweep_queue(settings.celery_queue)},
        },
        broker_transport=kombu_redis.transport_for(settings.redis_url),
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # A message not acked within this long is redelivered; the lease guard makes that harmless.
            "visibility_timeout": max(60, int(settings.lease_seconds * 4)),
            "socket_timeout": 5,
            "socket_connect_timeout": 3,
        },
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_seconds},
        },
        # The schedule lives in the scheduler's memory: one interval task has nothing worth keeping across
        # restarts, and a file (Celery's default, in the temporary directory) would be shared by every
        # scheduler on the host, and written on every tick.
        beat_scheduler="workers.celery_app:SweepingAtStart",
        beat_max_loop_interval=settings.sweep_interval_seconds,
    )
    _state["settings"] = settings
    app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
    return app


class SweepingAtStart(Scheduler):
    """Celery beat's in-memory schedule, with the sweep due at once: a scheduler (re)started after an
    outage hands out what was lost without first waiting a whole interval."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        for entry in self.schedule.values():
            entry.last_run_at = self.app.now() - timedelta(days=1)


def context():
    """The process's service context, built on first use (by then gevent has patched everything)."""
    if "context" not in _state:
        from orchestrator.bootstrap import build_context

        _state["context"] = build_context(_state["settings"])
    return _state["context"]


@setup_logging.connect
def _keep_process_logging(**_kwargs) -> None:
    """The CLI configured logging for the whole process (structured, one handler); Celery adds none."""


@task_prerun.connect
def _bind_task_ids(task_id=None, task=None, args=None, **_kwargs) -> None:
    run_id = args[0] if task is not None and task.name == ADVANCE_RUN and args else None
    logs.bind(task_id=task_id, run_id=run_id)


@task_postrun.connect
def _unbind_task_ids(**_kwargs) -> None:
    logs.clear()
