"""Engine and session factories. Created per process (after fork in workers), never at import."""

from __future__ import annotations

import select

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db.sqlite import make_sqlite_engine
from orchestrator.settings import Settings


def make_engine(settings: Settings, *, pool_size: int = 10) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        return make_sqlite_engine(url, pool_size)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "checkout", _check_alive)
    event.listen(engine, "before_cursor_execute", _note_writes)
    for ended in ("commit", "rollback"):
        event.listen(engine, ended, _forget_writes)
    return engine


def _note_writes(connection, _cursor, statement: str, _parameters, _context, _executemany) -> None:
    """Mark the transaction as one that wrote (anything but a SELECT), for `wrote` below."""
    if statement.lstrip()[:6].upper() != "SELECT":
        connection.info["wrote"] = True


def _forget_writes(connection) -> None:
    if not connection.invalidated:  # else its DBAPI connection is thrown away, with the mark
        connection.info.pop("wrote", None)


def on_postgres(session: Session) -> bool:
    """Whether the session runs on Postgres (else SQLite, `orchestrator dev`): the few statements that
    differ between the two ask this."""
    return session.get_bind().dialect.name == "postgresql"


def wrote(session: Session) -> bool:
    """Whether the session's transaction wrote anything yet (always True on engines that do not track it).
    A unit of work that only read ends with COMMIT instead of ROLLBACK: the same for the database, but
    psycopg drops every prepared statement of the connection at a ROLLBACK (and sends DEALLOCATE ALL),
    which made every statement after a read be parsed and planned again."""
    if not on_postgres(session):
        return True
    return bool(session.connection().info.get("wrote"))


def _check_alive(dbapi_connection, _record, _proxy) -> None:
    """A pooled connection the server closed (a restart, an idle timeout) is replaced before use, without
    the round trip of `pool_pre_ping` (measured: 7–9% of a worker's and the api's CPU per run). An idle
    connection the server has sent anything to is dead: Postgres speaks first only to say it is closing
    it (this product never LISTENs), and a closed socket reads as ready."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection was closed")
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    if readable:
        raise DisconnectionError("the server closed the connection")


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)
