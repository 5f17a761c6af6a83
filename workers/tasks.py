"""Thin tasks: ids in, one service call, nothing else."""

from celery import shared_task

from orchestrator.engine import advance, sweeper
from orchestrator.files import ingestion
from orchestrator.observability.metrics import instruments
from workers.celery_app import context


@shared_task(name="orchestrator.advance_run", acks_late=True)
def advance_run(run_id: str) -> None:
    advance.advance(context(), run_id)


@shared_task(name="orchestrator.ingest", acks_late=True)
def ingest(chunk_set_id: str) -> None:
    ingestion.ingest(context(), chunk_set_id)


@shared_task(name="orchestrator.sweep", ignore_result=True, expires=30)
def sweep() -> None:
    counts = sweeper.sweep(context())
    for action, count in counts.items():
        instruments().sweep_runs.labels(action).inc(count)
