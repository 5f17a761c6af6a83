"""Prometheus metrics: the families, the per-process-group multiprocess directory, and the exposition.

Under gunicorn and Celery's prefork pool a scrape reaches one process, so every process writes its
counters and histograms into files in a shared directory (prometheus-client's multiprocess mode) and the
exposition sums them. The directory belongs to one process group: the CLI makes a fresh one when `api` or
`worker` starts and removes it at exit; dead children are marked so their live gauges drop out.

prometheus-client picks its value storage when it is first imported, from PROMETHEUS_MULTIPROC_DIR, so
`use_multiprocess_dir` must run before anything imports it; this module imports it lazily for that reason.

Families (all prefixed `orchestrator_`):

    http_request_duration_seconds{method,route,status}   histogram  api: by Flask URL rule, not raw path
    streams_active                                         gauge      api: open SSE relays (livesum)
    turn_duration_seconds{outcome}                         histogram  worker: claim to end of one turn
    model_first_chunk_seconds{provider}                    histogram  worker: request to first chunk
    model_duration_seconds{provider,outcome}               histogram  worker: whole model stream
    sweep_runs_total{action}                               counter    worker: expired / re-enqueued runs
    model_api_requests_total{tenant,api,model,status}      counter    api: chat completions, embeddings
    model_api_tokens_total{tenant,api,model,direction}     counter    api: tokens in (prompt) and out
    model_api_duration_seconds{tenant,api,model}           histogram  api: a whole call, stream included
    lease_takeovers_total                                  counter    worker: lapsed leases taken over
    runs{status}                                           gauge      scrape time, from Postgres
    queue_depth{queue}                                     gauge      scrape time, Celery queue in Redis
    state_up{source}                                       gauge      scrape time: 1 if it could be read
"""

from __future__ import annotations

import atexit
import functools
import hmac
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MODEL_API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class Instruments:
    http_latency: Any
    streams_active: Any
    turn_latency: Any
    model_first_chunk: Any
    model_latency: Any
    sweep_runs: Any
    model_api_requests: Any
    model_api_tokens: Any
    model_api_latency: Any


@functools.cache
def instruments() -> Instruments:
    """This process's metric objects, made on first use (after the CLI chose the storage)."""
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        http_latency=Histogram(
            "orchestrator_http_request_duration_seconds",
            "Time to produce an HTTP response (for streams: until the response starts), by URL rule.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
        ),
        streams_active=Gauge(
            "orchestrator_streams_active", "Server-Sent Event relays open now.", multiprocess_mode="livesum"
        ),
        turn_latency=Histogram(
            "orchestrator_turn_duration_seconds",
            "One turn of a run on a worker (a thread's run or a response): from taking the lease to the end.",
            ["api", "outcome"],
            buckets=TURN_BUCKETS,
        ),
        model_first_chunk=Histogram(
            "orchestrator_model_first_chunk_seconds",
            "From asking the model to its first streamed chunk.",
            ["provider"],
            buckets=TURN_BUCKETS,
        ),
        model_latency=Histogram(
            "orchestrator_model_duration_seconds",
            "A whole model call, first request to last chunk.",
            ["provider", "outcome"],
            buckets=TURN_BUCKETS,
        ),
        sweep_runs=Counter(
            "orchestrator_sweep_runs", "Runs the scheduler's sweep expired or handed out again.", ["action"]
        ),
        model_api_requests=Counter(
            "orchestrator_model_api_requests",
            "Chat completions and embeddings calls, by how they ended (an HTTP status; 499: the client left).",
            ["tenant", "api", "model", "status"],
        ),
        model_api_tokens=Counter(
            "orchestrator_model_api_tokens",
            "Tokens of chat completions and embeddings calls: in (the prompt) and out (the completion).",
            ["tenant", "api", "model", "direction"],
        ),
        model_api_latency=Histogram(
            "orchestrator_model_api_duration_seconds",
            "A whole chat completions or embeddings call, from the request to its last byte.",
            ["tenant", "api", "model"],
            buckets=MODEL_API_BUCKETS,
        ),
    )


@functools.cache
def lease_takeovers() -> Any:
    """Made only where turns run (workers, the embedded mode): an api process would export it as a 0 that
    never moves, and an alert on it there would never fire."""
    from prometheus_client import Counter

    return Counter(
        "orchestrator_lease_takeovers",
        "Leases this process took over after the previous holder's lapsed (it died or stalled).",
    )


# --- the multiprocess directory -------------------------------------------------------------------


def use_multiprocess_dir(settings: Settings, role: str) -> Path:
    """Give this process group (this process and the children it forks) a fresh metrics directory."""
    parent = Path(settings.metrics_dir or tempfile.gettempdir())
    _remove_stale(parent, role)
    path = parent / f"orchestrator-metrics-{role}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    owner = os.getpid()
    # Forked children inherit atexit handlers (gunicorn's workers run them): only the owner cleans up.
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    return path


def _remove_stale(parent: Path, role: str) -> None:
    """Directories left by a group of this role that was killed outright."""
    for path in parent.glob(f"orchestrator-metrics-{role}-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """A child exited: its live gauges stop counting (its counters and histograms stay in the sums)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)


# --- exposition ------------------------------------------------------------------------------------


def exposition(*extra: Any) -> tuple[bytes, str]:
    """The text format of this process group's metrics plus any extra collectors."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    instruments()  # every family is described from the first scrape on, even before its first sample
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, registry: Any):
        self._registry = registry

    def collect(self):
        return self._registry.collect()


def authorized(settings: Settings, header: str | None) -> bool:
    """No token configured: open (keep the port private). Else `Authorization: Bearer <token>`."""
    if not settings.metrics_token:
        return True
    scheme, _, token = (header or "").partition(" ")
    given, expected = token.strip().encode(), settings.metrics_token.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given, expected)


# --- the worker's own endpoint ---------------------------------------------------------------------


def serve(settings: Settings, host: str, port: int) -> threading.Thread:
    """A small HTTP server for a worker's metrics (`orchestrator worker --metrics-port`), in a thread."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, *_args) -> None:
            pass

    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not authorized(settings, environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"metrics token required\n"]
        body, content_type = exposition()
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return thread
