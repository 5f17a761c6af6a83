"""`orchestrator dev`: the whole product in one process, on embedded adapters, with nothing to install.

    production                       embedded
    Postgres                         a SQLite file in the data directory, migrated to head on start
    Celery workers and the broker    LocalQueue: threads in this process calling advance.advance
    Redis pub/sub and delta buffer   LocalBus: in-process fan-out, which is also the streams' hub
    Celery beat                      a thread calling sweeper.sweep every sweep_interval_seconds
    gunicorn with gevent workers     werkzeug's threaded WSGI server

The services, the run engine, the sweeps and the Flask app are the production ones.

Werkzeug's threaded server gives every connection its own OS thread, so a long-lived event stream
blocks nobody else, and it needs no monkey patching. gevent is the wrong fit here: SQLite's driver waits
for the write lock inside C without yielding, so under gevent one request waiting for the lock would
stall the whole process, including the request holding it. A thread per stream costs more memory than a
greenlet, which matters for thousands of streams, not for a developer's few.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from orchestrator.adapters.local_bus import LocalBus
from orchestrator.adapters.local_queue import LocalQueue
from orchestrator.context import Context
from orchestrator.db.connection import make_engine, make_sessionmaker
from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.engine import advance, hosted, sweeper
from orchestrator.files import ingestion, ingestion_sweep
from orchestrator.observability.turns import record_takeovers
from orchestrator.sandbox.factory import describe
from orchestrator.sandbox.local import LocalSandbox
from orchestrator.services.keys import create_key
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
WORKERS = 8  # runs advanced at once; each waits on the model, not on the CPU
STOP_TIMEOUT = 10.0  # how long turns in progress get to finish on Ctrl-C / SIGTERM


def run_dev(settings: Settings, *, port: int, data_dir: str) -> int:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    with _exclusive(data) as owned:
        if not owned:
            print(
                f"another `orchestrator dev` is using {data}; stop it or pass another --data-dir",
                file=sys.stderr,
            )
            return 1
        files_dir = settings.files_dir or str(data / "files")
        # code_interpreter runs in this process's jail: there is no sandbox service to call.
        updates = {"database_url": database_url(data), "files_dir": files_dir, "code_in_process": True}
        settings = settings.model_copy(update=updates)
        _migrate(settings.database_url)
        embedded = Embedded(settings)
        try:
            return _serve(embedded, port)
        finally:
            embedded.stop(STOP_TIMEOUT)


def database_url(data: Path) -> str:
    return f"sqlite:///{data / 'orchestrator.sqlite3'}"


def _migrate(url: str) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # let the banner be what a newcomer reads
    from orchestrator.db.migrate import upgrade  # alembic logs as it is imported

    upgrade(url)


class Embedded:
    """The embedded mode's context, its run workers and its sweeper thread."""

    def __init__(self, settings: Settings):
        self._engine = make_engine(settings)
        bus = LocalBus(settings.delta_replay_seconds)
        self._queue = LocalQueue(WORKERS)
        self.ctx = Context(settings, make_sessionmaker(self._engine), self._queue, bus, hub=bus)
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="sweeper", daemon=True)
        self._queue.start(lambda run_id: advance.advance(self.ctx, run_id))
        self._queue.start_ingestion(lambda chunk_set_id: ingestion.ingest(self.ctx, chunk_set_id))
        # This process holds the data directory: whatever the last one left running is ours now, at once
        # rather than after its lease lapses.
        _adopt_unfinished(self.ctx)
        self._sweeper.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._sweeper.join(timeout)
        if not self._queue.stop(timeout):
            log.warning("turns still running after %.0f s; their runs resume on the next start", timeout)
        hosted.close_sandbox(self.ctx)
        self._engine.dispose()

    def _sweep(self) -> None:
        # Sweeps expire overdue runs and re-enqueue runs whose in-process task was lost.
        while True:
            try:
                sweeper.sweep(self.ctx)
            except Exception:
                log.warning("sweep failed; trying again in a moment", exc_info=True)
            if self._stopping.wait(self.ctx.settings.sweep_interval_seconds):
                return


def _adopt_unfinished(ctx: Context) -> None:
    """Hand out again every run the previous process left unfinished, instead of waiting for its leases to
    lapse. Only this mode may: in production a live lease may belong to a live worker."""
    run_ids, taken_over = sweeper.release_all(ctx)
    record_takeovers(taken_over)
    for run_id in run_ids:
        ctx.queue.enqueue(run_id)
    if run_ids:
        log.info("re-enqueued %d runs the previous process left unfinished", len(run_ids))
    for chunk_set_id in ingestion_sweep.release_all(ctx):
        ctx.queue.enqueue_ingestion(chunk_set_id)


def _serve(embedded: Embedded, port: int) -> int:
    from orchestrator.api.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: the SDK polls a lot
    app = create_app(embedded.ctx.settings, embedded.ctx)
    # On a port in use werkzeug says so and exits with status 1.
    server = make_server(HOST, port, app, threaded=True, request_handler=_Handler)
    stop = _stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http")
    thread.start()
    try:
        _, key = create_key(embedded.ctx, "dev")
        code = code_interpreter_status(embedded.ctx)
        print(banner(_base_url(server), key, embedded.ctx.settings.database_url, code), flush=True)
        stop.wait()
        print("stopping…", flush=True)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    return 0


class _Handler(WSGIRequestHandler):
    # Stream frames are small writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed
    # ACK hold each one back by up to tens of milliseconds.
    disable_nagle_algorithm = True


def code_interpreter_status(ctx: Context) -> str:
    """Whether code_interpreter can run code here, found by running `print(1)` in a jail."""
    if not isinstance(ctx.sandbox, LocalSandbox):
        return describe(ctx.settings)[1]
    try:
        ctx.sandbox.check()
    except SandboxUnavailable as error:
        return f"NOT available. {error.message}"
    return f"ready (a jail in this process: {ctx.sandbox.walls.describe()})"


def banner(base: str, key: str, database: str, code: str = "") -> str:
    return f"""
orchestrator dev: the API is on {base}  (database: {database.removeprefix("sqlite:///")})

API key (tenant "dev"): {key}

    from openai import OpenAI
    client = OpenAI(base_url="{base}/v1", api_key="{key}")

    from openai import AzureOpenAI
    client = AzureOpenAI(azure_endpoint="{base}", api_version="2024-05-01-preview", api_key="{key}")

Models whose name starts with "local" answer in-process; other names go to OPENAI_BASE_URL. Try:
    {_python()} examples/streamed_tool_call.py --base-url {base} --api-key {key}
and watch the runs in the inspector, {base}/ui (it asks for the key). Ctrl-C stops.

code_interpreter: {code}
"""


def _python() -> str:
    """This interpreter (the one with the SDK installed), as short as it can be said from here."""
    executable = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(executable.relative_to(Path.cwd()))
    return str(executable)


def _base_url(server: BaseWSGIServer) -> str:
    return f"http://{HOST}:{server.server_port}"


def _stop_on_signals() -> threading.Event:
    """An event set by the first Ctrl-C or SIGTERM; a second one ends the process at once."""
    stop = threading.Event()

    def handle(signum, _frame) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


@contextlib.contextmanager
def _exclusive(data: Path) -> Iterator[bool]:
    """Hold the data directory for this process: two processes would each think the other's runs orphaned."""
    with (data / "orchestrator.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
