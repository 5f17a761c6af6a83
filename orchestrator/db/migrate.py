"""Run Alembic from the installed package (the CLI's `migrate`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_migrations_directory()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def _migrations_directory() -> Path:
    """The installed `migrations` package's directory, found without importing it: its env.py imports the
    models, so an import here would close a circle."""
    spec = importlib.util.find_spec("migrations")
    return Path(next(iter(spec.submodule_search_locations)))
