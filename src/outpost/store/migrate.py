"""Apply Alembic migrations (the same ones for SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from outpost.store.db import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"
# Replicas that start together on PostgreSQL migrate one at a time: the others wait, then find the
# schema at head and have nothing left to do.
_MIGRATION_LOCK = 7_346_000


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(url: str, revision: str = "head", *, encryption_keys: list[str] | None = None) -> None:
    """Migrate to `revision`. Migrations that encrypt stored secrets use `encryption_keys`."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config = alembic_config()
            config.attributes["connection"] = connection
            config.attributes["encryption_keys"] = [k.encode() for k in encryption_keys or []]
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
