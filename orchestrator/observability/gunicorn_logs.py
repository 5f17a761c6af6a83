"""gunicorn's messages through the process's structured log handler (the api and the sandbox serve with it)."""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger


class ProcessLogger(Logger):
    """gunicorn's messages go through the process's structured log handler instead of its own."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for name in ("gunicorn.error", "gunicorn.access"):
            log = logging.getLogger(name)
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
