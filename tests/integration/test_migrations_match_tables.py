"""The Alembic migrations build exactly the schema `outpost.store.tables` describes."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from outpost.store import migrate
from outpost.store.tables import Base

pytestmark = pytest.mark.integration


def test_migrated_sqlite_schema_matches_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()
