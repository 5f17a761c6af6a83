"""Structured logs: every line one JSON object (or a readable console line) carrying the ids in scope.

Modules keep logging through the standard library (`logging.getLogger(__name__)`); structlog's
ProcessorFormatter renders those records and structlog's own, adding the tenant, thread, run and step ids
bound in the current context (a request's greenlet, or a task in a worker process). Configured once per
process by the CLI; Celery and gunicorn are told not to install handlers of their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

if TYPE_CHECKING:
    from orchestrator.settings import Settings

IDS = ("tenant_id", "thread_id", "run_id", "step_id", "message_id", "assistant_id")


QUIET_BELOW_DEBUG = ("httpx", "httpx2", "httpcore")


def configure(settings: Settings, role: str) -> None:
    """Route every log record of this process through one handler on stderr."""
    configure_output(settings.log_level, settings.log_format, role)


def configure_output(level: str, log_format: str, role: str) -> None:
    """`configure` from the two settings it reads (for a process that builds no Settings: the supervisor)."""
    shared = _shared_processors(role)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(log_format)],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The HTTP clients log every request they send at INFO: one line per model call would outnumber the
    # process's own lines. They show at DEBUG.
    for chatty in QUIET_BELOW_DEBUG:
        logging.getLogger(chatty).setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, _wrap],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _shared_processors(role: str) -> list:
    def add_role(_logger, _name, event: dict) -> dict:
        event.setdefault("role", role)
        return event

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_role,
    ]


_wrap = structlog.stdlib.ProcessorFormatter.wrap_for_formatter


def _renderer(log_format: str) -> list:
    # Tracebacks without the frames' local values: those hold the settings (API keys, tokens) and the
    # request's content, which a log must not carry (structlog shows them by default).
    if log_format == "console":
        return [
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        ]
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    return [tracebacks, structlog.processors.JSONRenderer(sort_keys=False)]


def get(name: str) -> Any:
    """A structlog logger (key-value events) that goes through the same handler."""
    return structlog.stdlib.get_logger(name)


def bind(**ids: Any) -> None:
    """Add ids to every later line of the current context (None values are skipped)."""
    bind_contextvars(**{key: value for key, value in ids.items() if value is not None})


def clear() -> None:
    clear_contextvars()


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Ids on every line logged inside the block, restored afterwards."""
    with bound_contextvars(**{key: value for key, value in ids.items() if value is not None}):
        yield
