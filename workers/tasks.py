"""Thin tasks: ids in, one service call, nothing else.

Each task imports its service when it runs: a runs process never loads ingestion's modules nor an
ingestion process the engine's (issue 23: what a process imports stays in its memory). `warm_up` imports a
role's services at the process's start, so its first task pays no import.
"""

import importlib

from celery import shared_task

from workers.celery_app import context

SERVICES = {
    "runs": ("orchestrator.engine.advance", "orchestrator.engine.sweeper"),
    "ingest": ("orchestrator.files.ingestion",),
}


def warm_up(role: str) -> None:
    for module in SERVICES[role]:
        importlib.import_module(module)


@shared_task(name="orchestrator.advance_run", acks_late=True)
def advance_run(run_id: str) -> None:
    from orchestrator.engine import advance

    advance.advance(context(), run_id)


@shared_task(name="orchestrator.ingest", acks_late=True)
def ingest(chunk_set_id: str) -> None:
    from orchestrator.files import ingestion

    ingestion.ingest(context(), chunk_set_id)


@shared_task(name="orchestrator.sweep", ignore_result=True, expires=30)
def sweep() -> None:
    from orchestrator.engine import sweeper
    from orchestrator.observability.metrics import instruments

    counts = sweeper.sweep(context())
    for action, count in counts.items():
        instruments().sweep_runs.labels(action).inc(count)
