"""A connection that dies mid-request: the unit of work answers ServiceUnavailable (a 503), whatever
raises first, the statement or the rollback on the dead connection when the unit of work closes."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from orchestrator.domain.errors import ServiceUnavailable


def kill_backend_of(uow, database_url) -> None:
    pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_a_statement_on_a_connection_killed_mid_transaction_is_a_503(ctx, database_url):
    with pytest.raises(ServiceUnavailable), ctx.uow() as uow:
        kill_backend_of(uow, database_url)
        uow.session.execute(text("SELECT 1"))


def test_a_rollback_that_fails_on_a_dead_connection_is_still_a_503(ctx, database_url):
    class Boom(Exception):
        pass

    # The request fails for another reason; the connection died meanwhile, so closing fails as well.
    with pytest.raises(ServiceUnavailable) as raised, ctx.uow() as uow:
        kill_backend_of(uow, database_url)
        original_close = uow.session.close

        def failing_close():
            original_close()
            raise OperationalError("ROLLBACK", {}, Exception("server closed the connection unexpectedly"))

        uow.session.close = failing_close
        raise Boom
    assert isinstance(raised.value.__cause__, OperationalError)
