"""gunicorn with gevent workers: one cheap greenlet per open stream, so thousands of SSE clients fit."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from orchestrator.settings import Settings


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict):
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in each worker after fork and after gevent's monkey patching: no shared connections.
        from orchestrator.api.app import create_app

        return create_app(self._settings)


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gevent",
        "worker_connections": 4000,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
    }
    _Server(settings, options).run()
