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


def test_worker_processes_do_not_inherit_the_broker_url_handed_to_the_supervisor():
    from workers.supervisor import BROKER_ENV, child_environment

    assert BROKER_ENV not in child_environment({BROKER_ENV: "redis://:secret@host/0", "PATH": "/bin"})


def test_the_supervisor_process_imports_neither_the_settings_nor_redis_nor_structlog():
    # What the worker's supervisor imports stays in its memory for as long as the worker runs (issue 23).
    import subprocess
    import sys

    heavy = ("pydantic", "pydantic_settings", "redis", "kombu", "celery", "structlog", "prometheus_client")
    code = (
        "import sys, workers.supervisor as s; s._log_when_needed('INFO', 'json'); "
        "print(sorted({name.split('.')[0] for name in sys.modules}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not [name for name in heavy if f"'{name}'" in loaded]


def test_the_supervisor_logs_its_first_line_as_the_other_processes_do():
    import json
    import subprocess
    import sys

    code = (
        "import logging, workers.supervisor as s; s._log_when_needed('INFO', 'json'); "
        "logging.getLogger('workers.supervisor').info('quiet'); "
        "logging.getLogger('workers.supervisor').debug('below the level'); "
        "logging.getLogger('workers.supervisor').warning('worker process %d exited', 7); "
        "logging.getLogger('workers.supervisor').warning('again')"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    events = [json.loads(line) for line in lines.splitlines()]
    assert [event["event"] for event in events] == ["quiet", "worker process 7 exited", "again"]
    assert {event["role"] for event in events} == {"worker"} and events[1]["level"] == "warning"


def test_a_runs_process_loads_neither_ingestion_nor_numpy_until_a_task_needs_them():
    # What a worker process imports stays in its memory (issue 23): each role imports its own services.
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import sys, workers.tasks as t; t.warm_up('runs')\n"
        "print('orchestrator.engine.advance' in sys.modules, 'orchestrator.files.ingestion' in sys.modules,"
        " 'numpy' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == ["True", "False", "False"]
