"""Shared fixtures. Expensive things (the tools directory, a running server) are made once per worker."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.admin import bootstrap
from outpost.api_client import OutpostAPI
from outpost.tools import install_tools
from tests.support import databases
from tests.support.processes import Proc, Server, start_agent, start_server

EXAMPLES = Path(__file__).parent.parent / "examples"
CONFIGS = Path(__file__).parent / "configs"


def pytest_report_header() -> str:
    return f"database: {databases.kind()} (OUTPOST_TEST_DATABASE)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    databases.drop_created()


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_tools(tmp_path_factory.mktemp("tools")).root


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[Server]:
    """One real server per test worker (on the database OUTPOST_TEST_DATABASE names, built-in agent on); tests isolate by organization."""
    srv = start_server(tmp_path_factory.mktemp("server"), tools_dir)
    yield srv
    srv.proc.stop()


_orgs = itertools.count()


@pytest.fixture
def org(server: Server) -> tuple[str, str]:
    """A fresh organization with an owner; returns (name, API token)."""
    name = f"org-{os.getpid()}-{next(_orgs)}-{uuid.uuid4().hex[:6]}"
    token = asyncio.run(bootstrap(server.db_url, name, f"owner-{name}@example.com"))
    return name, token


@pytest.fixture
def api(server: Server, org: tuple[str, str]) -> Iterator[OutpostAPI]:
    client = OutpostAPI(server.url, org[1])
    yield client
    client.close()


@pytest.fixture
def agents(server: Server, tools_dir: Path, tmp_path: Path) -> Iterator[list[Proc]]:
    """Start agents with `agents_start(token, *args)`; all are stopped (and their groups killed) after the test."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture
def start(server: Server, tools_dir: Path, tmp_path: Path, agents: list[Proc]):  # type: ignore[no-untyped-def]
    counter = itertools.count()

    def _start(token: str, *args: str, name: str | None = None, env: dict[str, str] | None = None) -> Proc:
        n = next(counter)
        proc = start_agent(
            server.url, token, tmp_path / f"agent{n}", tools_dir, *args, name=name or f"agent{n}", env=env
        )
        agents.append(proc)
        return proc

    return _start
