"""`orchestrator worker`: the runs in flight (`--concurrency N`) shared out among worker processes.

    orchestrator worker ──▶ workers.pool (gevent, N/P runs) ─┐
                       ──▶ workers.pool (gevent, N/P runs) ─┼─ the runs' queue and the sweeps'
                       ──▶ …  P processes (`--processes`)   ─┘
                       ──▶ workers.pool --role ingest (gevent, ORCHESTRATOR_INGEST_CONCURRENCY chunk sets)
                                                             ── the ingestion queue

The ingestion process is one per command whatever `--processes` says (0 chunk sets at once: none), so
ingestion is bounded apart from runs: a few database connections and parsing processes, never a run's.

Each process is one CPU's worth of turns; the supervisor only starts them, forwards stop signals (SIGTERM
and SIGINT: Celery's warm shutdown, running turns finish; SIGQUIT: stop at once) and starts again a process
that died while the command was not stopping. Killing the whole group loses nothing: leases lapse and the
scheduler hands the runs to other workers.

A warm shutdown with the broker away would wait on it call after call (each ack, each event published,
each message given back times out), for minutes with many runs in flight. So once a stop has taken
STOP_GRACE seconds the supervisor looks at the broker, and every STOP_GRACE seconds after: unreachable, it
kills the processes, which loses nothing either; reachable, it lets the turns finish.

The supervisor runs for as long as its processes and counts in the worker's memory, so `orchestrator
worker`, once it has read and checked the settings, replaces itself (exec, same process) with `python -m
workers.supervisor`, which imports only the standard library until something goes wrong: the settings'
pydantic, Redis' client and structlog took 52 MB of resident memory where this takes about 12 (issue 23). With
`--metrics-port` the command supervises in place, as it serves the metrics too.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
STOP_GRACE = 5.0  # a warm shutdown of an idle worker process takes about 4 s


def shares(concurrency: int, processes: int) -> list[int]:
    """N runs in flight split as evenly as possible over at most N processes."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (index < extra) for index in range(processes)]


# glibc malloc's arenas for the worker processes (and their parsing processes), unless the environment
# sets them: by default glibc keeps an arena per thread (up to 8 per core), each holding on to what its
# thread freed; gevent's thread pool, where the local embedder computes, would have several.
MALLOC_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


# How `orchestrator worker` hands the broker's URL to the supervisor it execs: in the environment, which
# only the same user can read, not on the command line, which anyone may (it may hold a password).
BROKER_ENV = "ORCHESTRATOR_SUPERVISOR_BROKER_URL"


def child_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment a worker process starts with: the supervisor's, with MALLOC_DEFAULTS where unset."""
    return {**MALLOC_DEFAULTS, **{name: value for name, value in environ.items() if name != BROKER_ENV}}


def plan(concurrency: int, processes: int, ingest_concurrency: int) -> list[tuple[str, int]]:
    """(role, concurrency) of each worker process: the runs' shares, then the ingestion process."""
    runs = [("runs", share) for share in shares(concurrency, processes)]
    return runs + ([("ingest", ingest_concurrency)] if ingest_concurrency > 0 else [])


class Supervisor:
    def __init__(self, processes: list[tuple[str, int]], broker_url: str | None = None):
        self._plan = processes  # (role, concurrency) of each process: plan()
        self._broker_url = broker_url
        self._children: dict[int, subprocess.Popen] = {}
        self._stopping: int | None = None  # the signal the children were sent to stop
        self._look_at_broker = 0.0  # when a stop that is still going on looks at the broker next

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._stop)
        for index in range(len(self._plan)):
            self._start(index)
        failed = False
        while self._children:
            for index, child in list(self._children.items()):
                code = child.poll()
                if code is None:
                    continue
                _mark_dead(child.pid)
                del self._children[index]
                if self._stopping is not None:
                    failed |= code != 0
                    continue
                log.warning("worker process %d exited with %s; starting it again", child.pid, code)
                time.sleep(RESTART_DELAY)
                self._start(index)
            if self._stopping is not None and self._broker_away():
                self._kill_children()
            time.sleep(0.2)
        return 1 if failed else 0

    def _start(self, index: int) -> None:
        role, concurrency = self._plan[index]
        command = [sys.executable, "-m", "workers.pool", f"--concurrency={concurrency}", f"--role={role}"]
        self._children[index] = subprocess.Popen(
            [*command, f"--index={index}"], env=child_environment(dict(os.environ))
        )
        if self._stopping is not None:  # a signal came while it was starting
            self._children[index].send_signal(self._stopping)

    def _stop(self, signum: int, _frame) -> None:
        # SIGINT from a terminal reaches the children too; they get SIGTERM from here, which is the same
        # warm shutdown (a second SIGINT would make Celery's a cold one).
        if self._stopping is None:
            self._look_at_broker = time.monotonic() + STOP_GRACE
        self._stopping = signal.SIGQUIT if signum == signal.SIGQUIT else signal.SIGTERM
        for child in list(self._children.values()):
            if child.poll() is None:
                os.kill(child.pid, self._stopping)

    def _broker_away(self) -> bool:
        """A stop past its grace period, with the broker not answering (looked at every STOP_GRACE s)."""
        if self._broker_url is None or time.monotonic() < self._look_at_broker:
            return False
        from orchestrator.adapters.broker import check_broker  # kombu and redis: only once stopping

        try:
            check_broker(self._broker_url, timeout=1.0)
            return False
        except Exception:
            return True
        finally:
            self._look_at_broker = time.monotonic() + STOP_GRACE

    def _kill_children(self) -> None:
        log.warning(
            "stopping with the broker unreachable: the worker processes are killed; their runs' leases lapse"
        )
        for child in self._children.values():
            if child.poll() is None:
                child.kill()


def _mark_dead(pid: int) -> None:
    from orchestrator.observability import metrics  # prometheus_client: only once a process has ended

    metrics.mark_process_dead(pid)


def command(
    processes: list[tuple[str, int]], log_level: str, log_format: str, metrics_dir: Path
) -> list[str]:
    """The command line of `python -m workers.supervisor` for these processes (what `orchestrator worker`
    execs); it removes `metrics_dir`, the processes' metrics, when it ends."""
    shares = [f"--process={role}:{concurrency}" for role, concurrency in processes]
    options = [f"--log-level={log_level}", f"--log-format={log_format}", f"--metrics-dir={metrics_dir}"]
    return [sys.executable, "-m", "workers.supervisor", *shares, *options]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workers.supervisor")
    parser.add_argument("--process", action="append", required=True, help="role:concurrency, one a process")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="json")
    parser.add_argument("--metrics-dir", type=Path, help="removed when the supervisor ends")
    args = parser.parse_args(argv)
    _log_when_needed(args.log_level, args.log_format)
    processes = [(role, int(concurrency)) for role, concurrency in (item.split(":") for item in args.process)]
    try:
        return Supervisor(processes, os.environ.get(BROKER_ENV)).run()
    finally:
        if args.metrics_dir is not None:
            shutil.rmtree(args.metrics_dir, ignore_errors=True)


class _LazyStructuredLogs(logging.Handler):
    """The worker's structured logs (observability/logs.py), configured at the first record that passes the
    level: structlog and its renderers cost the supervisor more memory than it ever logs, which is a line
    when a process dies or a stop finds the broker away."""

    def __init__(self, level: str, log_format: str):
        super().__init__()
        self._settings = (level, log_format)

    def emit(self, record: logging.LogRecord) -> None:
        from orchestrator.observability import logs

        logs.configure_output(*self._settings, role="worker")  # replaces this handler on the root logger
        logging.getLogger().handle(record)


def _log_when_needed(level: str, log_format: str) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_LazyStructuredLogs(level, log_format))
    root.setLevel(level.upper())


if __name__ == "__main__":
    sys.exit(main())
