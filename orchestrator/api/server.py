"""gunicorn with gevent workers: one cheap greenlet per open stream, so thousands of SSE clients fit.

Stopping (SIGTERM to the master): each worker stops accepting, ends its open event streams at their next
frame or keep-alive (clients resume with Last-Event-ID on another process), lets other requests finish,
and exits; `graceful_timeout` is the keep-alive interval plus a margin, so a stream is never cut mid-frame.
"""

from __future__ import annotations

import gc
import signal

from gunicorn.app.base import BaseApplication

from orchestrator.observability import metrics
from orchestrator.observability.gunicorn_logs import ProcessLogger
from orchestrator.settings import Settings


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    @property
    def orchestrator_settings(self) -> Settings:
        """What the worker class reads its limits from (see orchestrator.api.gunicorn_worker)."""
        return self._settings

    def load(self):
        # Runs in each worker after fork and after gevent's monkey patching: no shared connections.
        from orchestrator.api.app import create_app
        from orchestrator.api.gunicorn_worker import BodyDeadline

        app = create_app(self._settings)
        app.wsgi_app = BodyDeadline(app.wsgi_app, self._settings.body_timeout_seconds)
        return app


def _post_worker_init(worker) -> None:
    """Chain gunicorn's SIGTERM handler: mark the app as draining so open streams end cleanly."""
    drain = worker.wsgi.extensions["drain"]
    stop = worker.handle_exit

    def handle_exit(sig, frame) -> None:
        drain.active = True  # only a flag: this runs inside a signal handler
        stop(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)
    # Everything loaded so far lives as long as the process: keep the collector from rescanning it, and
    # let it run less often, so a fan-out of one event to a thousand streams is not paused by it.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _child_exit(_server, worker) -> None:
    metrics.mark_process_dead(worker.pid)


# Connections one gevent worker process holds open at once.
WORKER_CONNECTIONS = 4000


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    if not settings.upstream_max_connections:
        # A relayed chat completion holds one upstream connection for as long as it streams, and any open
        # client connection may be one: without this, streams past the default pool (100) would queue.
        settings = settings.model_copy(update={"upstream_max_connections": WORKER_CONNECTIONS})
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "orchestrator.api.gunicorn_worker.ApiWorker",
        "worker_connections": WORKER_CONNECTIONS,
        "timeout": 60,
        "graceful_timeout": graceful_timeout(settings),
        "keepalive": 5,
        # gunicorn 27's control socket is one fixed path per user: several api processes on one host would
        # fight over it, and nothing here uses it.
        "control_socket_disable": True,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
        "logger_class": ProcessLogger,
        "post_worker_init": _post_worker_init,
        "child_exit": _child_exit,
    }
    _Server(settings, options).run()


def graceful_timeout(settings: Settings) -> int:
    """Long enough for every open stream to reach its next keep-alive after SIGTERM."""
    return int(max(20, settings.keepalive_seconds + 10))
