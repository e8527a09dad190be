"""The database every test uses, chosen by one switch: OUTPOST_TEST_DATABASE.

- unset or `sqlite`: a SQLite file in the test's own directory (what a single-machine install uses).
- `postgresql://user:password@host:port/dbname`: PostgreSQL, through a role that may create databases
  (`dbname` is only used to connect for CREATE/DROP DATABASE). `postgresql` alone means
  postgresql://outpost_test:outpost_test@127.0.0.1:5432/postgres.

On PostgreSQL every caller of `new_database()` gets a database of its own, cloned from a template that
has the migrations applied: cloning takes tens of milliseconds, migrating a second or so. The template
is made once (by whichever xdist worker gets there first, under an advisory lock) and named after a hash
of the migrations, so a changed migration makes a new template. `drop_created()` drops every database
this process made; `scripts/test` drops the rest (the template, the role) when it is done.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from outpost.store import migrate

DEFAULT_POSTGRES = "postgresql://outpost_test:outpost_test@127.0.0.1:5432/postgres"
_SETTING = os.environ.get("OUTPOST_TEST_DATABASE", "sqlite").strip() or "sqlite"
_TEMPLATE_LOCK = 7_346_001  # advisory lock key: one worker builds the template, the others wait
_created: list[str] = []
_counter = itertools.count()
_template: str | None = None


def kind() -> str:
    if _SETTING == "sqlite":
        return "sqlite"
    if _SETTING == "postgresql" or _SETTING.startswith(("postgresql://", "postgresql+psycopg://")):
        return "postgresql"
    raise RuntimeError(f"OUTPOST_TEST_DATABASE={_SETTING!r}: use sqlite, postgresql, or a postgresql:// URL")


def is_postgres() -> bool:
    return kind() == "postgresql"


def admin_url() -> str:
    return DEFAULT_POSTGRES if _SETTING == "postgresql" else _SETTING.replace("postgresql+psycopg://", "postgresql://")


def _url_for(dbname: str) -> str:
    return make_url(admin_url()).set(database=dbname).render_as_string(hide_password=False)


def _connect() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(admin_url(), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"OUTPOST_TEST_DATABASE points at PostgreSQL, but it cannot be reached ({exc}). Start it and create a "
            "role that may create databases (scripts/test does both), or unset OUTPOST_TEST_DATABASE for SQLite."
        ) from None


def _prefix() -> str:
    return str(make_url(admin_url()).username or "outpost").lower()


def _migrations_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted((migrate.MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def template() -> str:
    """The migrated template database (made on first use)."""
    global _template
    if _template is not None:
        return _template
    name = f"{_prefix()}_tpl_{_migrations_hash()}"
    with _connect() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_TEMPLATE_LOCK,))
        try:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                # Migrate under a temporary name and rename at the end: a half-made template never counts.
                building = f"{name}_building"
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                migrate.upgrade(_url_for(building))
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_TEMPLATE_LOCK,))
    _template = name
    return name


def new_database(directory: Path, *, empty: bool = False) -> str:
    """The URL of a database for one server or one test: a SQLite file in `directory`, or a new
    PostgreSQL database with the migrations applied (none with `empty`)."""
    if not is_postgres():
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / 'outpost.db'}"
    source = "template1" if empty else template()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{_prefix()}_{worker}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    with _connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source)))
    _created.append(name)
    return _url_for(name)


def drop_created() -> None:
    """Drop the databases this process made (their servers are stopped by now; FORCE ends stragglers)."""
    if not _created:
        return
    with _connect() as conn:
        while _created:
            name = _created.pop()
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def query(url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    """Rows of a query against a server's database, whichever the switch chose (tests that look at
    what is stored at rest)."""
    from sqlalchemy import create_engine, pool, text

    from outpost.store.db import sync_url

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement), params)]
    finally:
        engine.dispose()
