"""Throwaway Postgres databases on the server in DATABASE_URL (default: the local one).

The migrations run once per process and server, on a template database; each migrated throwaway database
is a copy of it (CREATE DATABASE … TEMPLATE: a fraction of a second, where running the migrations again
took over a second on a loaded machine). The template is dropped when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.db.migrate import upgrade

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

_templates: dict[str, str] = {}  # server URL → its migrated template database
_templates_lock = threading.Lock()


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


def _admin(base):
    return create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")


def _execute(base, statement: str) -> None:
    admin = _admin(base)
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


def _drop_at_exit(base, name: str) -> None:
    """The template's drop, unless its server is already gone (a private cluster stopped first)."""
    with contextlib.suppress(Exception):
        _execute(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrated_template(base) -> str:
    """The name of this server's template database, made and migrated on first use."""
    key = base.render_as_string(hide_password=False)
    with _templates_lock:
        if key not in _templates:
            name = f"orch_template_{uuid.uuid4().hex[:12]}"
            _execute(base, f'CREATE DATABASE "{name}"')
            try:
                upgrade(base.set(database=name).render_as_string(hide_password=False))
            except BaseException:
                _execute(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                raise
            atexit.register(_drop_at_exit, base, name)
            _templates[key] = name
        return _templates[key]


@contextmanager
def throwaway_database(*, migrate: bool = True, server: str | None = None) -> Iterator[str]:
    base = make_url(server or server_url())
    name = f"orch_test_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{_migrated_template(base)}"' if migrate else ""
    admin = _admin(base)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{template}'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
