"""Alembic environment. The URL comes from the config (set by `orchestrator migrate`), never the env."""

from alembic import context
from sqlalchemy import create_engine

from orchestrator.db.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    is_postgres = url.startswith("postgresql")
    connect_args = {"options": "-c lock_timeout=10s -c statement_timeout=120s"} if is_postgres else {}
    engine = create_engine(url, connect_args=connect_args)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=not is_postgres,
            compare_type=True,
        )
        with context.begin_transaction():
            if is_postgres:
                # Several `migrate` one-shots may start together; only one applies at a time.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
