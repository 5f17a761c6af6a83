"""The migrations produce exactly the schema the models declare (STYLE: a migration test)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from orchestrator.db.migrate import alembic_config, upgrade
from orchestrator.db.schema import metadata
from tests.support.databases import throwaway_database


def test_an_empty_database_migrated_to_head_matches_the_models_exactly():
    with throwaway_database(migrate=False) as url:  # not the suite's migrated template: from empty here
        upgrade(url)
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                diff = compare_metadata(context, metadata)
                tables = set(inspect(connection).get_table_names())
        finally:
            engine.dispose()
    assert diff == []
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_the_migration_history_is_one_line_with_a_single_head():
    script = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused"))
    assert len(script.get_heads()) == 1
    assert len(script.get_bases()) == 1
