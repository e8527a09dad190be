"""The schema on either database: `outpost admin migrate` makes it from nothing, it matches the tables
the code declares, and replicas that start together on an empty PostgreSQL database all come up."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, pool, select

from outpost.store import migrate
from outpost.store.db import Database, sync_url
from outpost.store.pools import BUILTIN_POOL_ID
from outpost.store.tables import Agent, Base
from tests.support import databases
from tests.support.processes import OUTPOST, clean_env, start_server, wait_until

pytestmark = pytest.mark.e2e

HEAD = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


def test_admin_migrate_builds_the_schema_the_code_declares(tmp_path: Path) -> None:
    url = databases.new_database(tmp_path, empty=True)
    for _ in range(2):  # the second run finds nothing to do
        done = subprocess.run(
            [*OUTPOST, "admin", "migrate", "--data-dir", str(tmp_path)],
            env=clean_env(OUTPOST_DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"database at revision {HEAD}"
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "the migrations and store/tables.py disagree"


def test_admin_migrate_names_an_unreachable_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [*OUTPOST, "admin", "migrate", "--database-url", "mysql://nowhere/db"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "use sqlite:// or postgresql://" in done.stderr


async def _builtin_agents(url: str) -> list[str]:
    db = Database(url, pool_size=1)
    try:
        async with db.read() as s:
            rows = (await s.execute(select(Agent.status).where(Agent.pool_id == BUILTIN_POOL_ID))).scalars()
            return list(rows)
    finally:
        await db.dispose()


@pytest.mark.skipif(not databases.is_postgres(), reason="several replicas need PostgreSQL")
def test_replicas_started_together_on_an_empty_database_all_come_up(tmp_path: Path, tools_dir: Path) -> None:
    import asyncio

    url = databases.new_database(tmp_path / "db", empty=True)
    key = Fernet.generate_key().decode()  # every replica has the same key (see docs/deployment.md)
    with ThreadPoolExecutor(3) as pool_:
        starting = [
            pool_.submit(
                start_server,
                tmp_path / f"replica{i}",
                tools_dir,
                "--builtin-agent-concurrency",
                "1",
                "--encryption-key",
                key,
                database_url=url,
            )
            for i in range(3)
        ]
        servers = [f.result() for f in starting]
    try:
        assert migrate.current_revision(url) == HEAD
        # Each replica made the built-in pool's token for its own built-in agent; all three registered.
        wait_until(lambda: asyncio.run(_builtin_agents(url)).count("idle") == 3, 60, what="three built-in agents")
    finally:
        for server in servers:
            server.proc.stop()
    for server in servers:
        assert "Traceback" not in server.proc.output()
