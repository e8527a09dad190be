"""Migrations: they build exactly the tables the code declares, and 0002 carries existing data over
(members of teams become organization members; sensitive values are encrypted with the server's key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from outpost.store import migrate
from outpost.store.tables import Base

pytestmark = pytest.mark.integration

NOW = "2026-01-01 00:00:00.000000"


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    url = _url(tmp_path)
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _old_database(url: str) -> None:
    migrate.upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO organizations VALUES ('acme', 'a@b.c', '{NOW}')"))
        conn.execute(
            text(f"INSERT INTO users (id, email, username, created_at) VALUES ('user-1', 'u@b.c', 'u', '{NOW}')")
        )
        conn.execute(
            text(
                f"INSERT INTO teams (id, organization_id, name, is_owners, created_at) VALUES ('team-1', 'acme', 'owners', 1, '{NOW}')"
            )
        )
        conn.execute(text("INSERT INTO team_members VALUES ('team-1', 'user-1')"))
        conn.execute(
            text(
                "INSERT INTO workspaces (id, organization_id, name, execution_mode, terraform_version, auto_apply, "
                f"source, locked, created_at, updated_at) VALUES ('ws-1', 'acme', 'w', 'remote', '1.0.3', 0, 'tfe-api', 0, '{NOW}', '{NOW}')"
            )
        )
        for var_id, value, sensitive in [("var-1", "plain-value", 0), ("var-2", "the-secret", 1)]:
            conn.execute(
                text(
                    "INSERT INTO variables (id, workspace_id, key, value, category, hcl, sensitive, created_at) "
                    f"VALUES ('{var_id}', 'ws-1', '{var_id}', '{value}', 'env', 0, {sensitive}, '{NOW}')"
                )
            )
    engine.dispose()


def test_0002_needs_the_key_for_existing_secrets(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _old_database(url)
    with pytest.raises(RuntimeError) as caught:
        migrate.upgrade(url)
    assert "encryption key" in str(caught.value)
    assert migrate.current_revision(url) == "0001"  # nothing half-done


def test_0002_carries_data_over(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _old_database(url)
    key = Fernet.generate_key().decode()
    migrate.upgrade(url, encryption_keys=[key])
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = dict((r.id, r.value) for r in conn.execute(text("SELECT id, value FROM variables")))
            ciphertext = conn.execute(text("SELECT value_ciphertext FROM variables WHERE id = 'var-2'")).scalar_one()
            members = conn.execute(text("SELECT organization_id, user_id FROM organization_memberships")).all()
        assert rows == {"var-1": "plain-value", "var-2": ""}
        assert Fernet(key.encode()).decrypt(ciphertext.encode()) == b"the-secret"
        assert [tuple(m) for m in members] == [("acme", "user-1")]
        from alembic import command

        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            config.attributes["encryption_keys"] = [key.encode()]
            command.downgrade(config, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM variables WHERE id = 'var-2'")).scalar_one() == "the-secret"
    finally:
        engine.dispose()
