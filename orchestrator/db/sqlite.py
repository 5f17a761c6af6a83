"""SQLite for the embedded mode: WAL, one writer at a time, and every transaction BEGIN IMMEDIATE.

SQLite has a single write lock and ignores SELECT … FOR UPDATE. A plain (deferred) transaction that reads
and then writes fails at once with "database is locked" when another connection committed in between
(SQLITE_BUSY_SNAPSHOT, which no busy timeout can wait out), and the driver's own habit of beginning only
at the first write leaves the reads before it unprotected. So every transaction begins IMMEDIATE: it takes
the write lock up front, and the services' lock-read-check-write sequences are as safe as on Postgres.
Reads queue behind writers too; that costs little, because transactions last milliseconds here (model
calls happen outside them).

Waiting for the lock: SQLite's busy handler polls with sleeps of up to 100 ms, which under a few
concurrent runs made the average BEGIN wait 0.2 s (and the worst 8 s). So the connections of one engine
first queue on a Python lock, held from BEGIN to COMMIT or ROLLBACK, and wake the moment it is free.
SQLite's lock remains the guard (another process, such as `orchestrator keys create`, still waits on the
busy timeout); the Python lock only orders this process's writers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine, create_engine, event, make_url

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 30


def make_sqlite_engine(url: str, pool_size: int) -> Engine:
    in_memory = make_url(url).database in (None, "", ":memory:")
    pool = {} if in_memory else {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": 60}
    # One lock per engine, shared by its connections through their class.
    factory = type("EngineConnection", (SerializedConnection,), {"write_lock": threading.Lock()})
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS, "factory": factory},
        **pool,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


class SerializedConnection(sqlite3.Connection):
    """A connection whose transactions hold its engine's write lock from BEGIN to COMMIT or ROLLBACK."""

    write_lock: threading.Lock
    _holding = False

    def begin_immediate(self) -> None:
        if self.write_lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            self._holding = True
        else:
            log.warning("no SQLite write turn after %d s; waiting on SQLite's own lock", BUSY_TIMEOUT_SECONDS)
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.write_lock.release()


def _on_connect(dbapi_connection, _record) -> None:
    # The driver must not open transactions itself: `_on_begin` does, for every transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def _on_begin(connection) -> None:
    connection.connection.dbapi_connection.begin_immediate()
