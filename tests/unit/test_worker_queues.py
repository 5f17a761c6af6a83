"""Ingestion and the sweeps have queues of their own: a worker command starts an ingestion process beside its
runs' processes, and the scheduler's sweeps and the API's ingestions are routed to their queues."""

from __future__ import annotations

from orchestrator.adapters.celery_queue import INGEST, SWEEP
from orchestrator.settings import Settings
from workers.supervisor import plan


def test_a_worker_command_runs_its_shares_of_runs_and_one_ingestion_process():
    assert plan(200, 1, 8) == [("runs", 200), ("ingest", 8)]
    assert plan(200, 2, 4) == [("runs", 100), ("runs", 100), ("ingest", 4)]
    assert plan(10, 1, 0) == [("runs", 10)]  # a worker that does not ingest


def test_ingestion_and_sweeps_are_routed_to_queues_of_their_own():
    from workers.celery_app import create_celery

    settings = Settings(database_url="sqlite://", celery_queue="q")
    app = create_celery(settings)
    assert app.amqp.router.route({}, INGEST)["queue"].name == "q.ingest"
    assert app.amqp.router.route({}, SWEEP)["queue"].name == "q.sweep"


def test_worker_processes_start_with_glibc_malloc_bounded_unless_the_environment_says_otherwise():
    from workers.supervisor import MALLOC_DEFAULTS, child_environment

    started = child_environment({"PATH": "/bin"})
    assert started == {"PATH": "/bin", **MALLOC_DEFAULTS}
    assert started["MALLOC_ARENA_MAX"] == "2"
    assert child_environment({"MALLOC_ARENA_MAX": "8"})["MALLOC_ARENA_MAX"] == "8"


def test_the_supervisor_gives_each_worker_process_that_environment(monkeypatch):
    import subprocess

    from workers.supervisor import MALLOC_DEFAULTS, Supervisor

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, env: started.append((command, env)))
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    Supervisor(plan(4, 1, 2))._start(1)
    ((command, env),) = started
    assert "--role=ingest" in command
    assert env["MALLOC_ARENA_MAX"] == MALLOC_DEFAULTS["MALLOC_ARENA_MAX"]
