"""The ingestion process's own wiring (`workers.pool --role ingest`): a warm shutdown ends promptly.

Celery's warm shutdown waits for the tasks in progress; a file being parsed may take minutes
(ORCHESTRATOR_PARSE_TIMEOUT_SECONDS). So when the worker starts shutting down, its parsing processes are
killed: each file being parsed is given back (its lease released, not failed) and is ingested again by
another worker or after the restart, from what was committed.
"""

from __future__ import annotations

from celery.signals import worker_shutting_down


def prepare() -> None:
    worker_shutting_down.connect(_stop_parsing, weak=False)


def _stop_parsing(**_kwargs) -> None:
    from orchestrator.files import parser_pool

    parser_pool.stop()
