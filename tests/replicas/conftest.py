"""Several `outpost server` replicas on one database (PostgreSQL), or one replica on SQLite."""

from __future__ import annotations

import asyncio
import io
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from outpost.admin import bootstrap
from outpost.api_client import OutpostAPI
from tests.support import databases
from tests.support.processes import Server, start_server


@dataclass
class Replicas:
    """Replicas sharing one database; `start(i)` (re)starts replica i on its port and data dir."""

    root: Path
    tools_dir: Path
    args: tuple[str, ...]
    db_url: str
    servers: list[Server] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, i: int, port: int | None = None) -> Server:
        server = start_server(
            self.root / f"replica{i}",
            self.tools_dir,
            *self.args,
            port=port,
            database_url=self.db_url,
            env=self.env,
        )
        if i < len(self.servers):
            self.servers[i] = server
        else:
            self.servers.append(server)
        return server

    def restart(self, i: int) -> Server:
        old = self.servers[i]
        old.proc.stop()
        return self.start(i, port=int(old.url.rsplit(":", 1)[1]))

    def organization(self) -> tuple[str, str]:
        name = f"rep-{uuid.uuid4().hex[:8]}"
        return name, asyncio.run(bootstrap(self.db_url, name, f"owner-{name}@example.com"))

    def api(self, i: int, token: str) -> OutpostAPI:
        return OutpostAPI(self.servers[i].url, token)

    def stop(self) -> None:
        for server in self.servers:
            server.proc.stop()


def replica_count() -> int:
    """Two replicas on PostgreSQL; SQLite is for one server process."""
    return 2 if databases.is_postgres() else 1


@pytest.fixture
def make_replicas(tmp_path: Path, tools_dir: Path) -> Iterator[object]:
    made: list[Replicas] = []

    def _make(count: int, *args: str, env: dict[str, str] | None = None) -> Replicas:
        root = tmp_path / f"replicas{len(made)}"
        # Replicas share the key that encrypts secrets at rest (one with another key refuses to start).
        shared = {"OUTPOST_ENCRYPTION_KEY": Fernet.generate_key().decode(), **(env or {})}
        replicas = Replicas(root, tools_dir, args, databases.new_database(root / "replica0"), env=shared)
        made.append(replicas)
        for i in range(count):
            replicas.start(i)
        return replicas

    yield _make
    for replicas in made:
        replicas.stop()


def tiny_archive() -> bytes:
    """A configuration archive for jobs that agents finish without running terraform."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        content = b'resource "null_resource" "x" {}\n'
        info = tarfile.TarInfo("main.tf")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
