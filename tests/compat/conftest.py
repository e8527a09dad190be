"""Fixtures for real-client compatibility tests: an HTTPS server, since the terraform CLI speaks only HTTPS.

The server is started here rather than with `tests.support.processes.start_server`, whose readiness
check polls plain http://. It trusts a CA made by trustme; terraform trusts it through SSL_CERT_FILE, the
agent through --ca-cert.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from outpost.admin import bootstrap
from outpost.api_client import OutpostAPI
from tests.support import databases
from tests.support.processes import OUTPOST, Proc, free_port, server_env, start_agent, wait_until


@dataclass
class TLSServer:
    host: str  # "localhost:PORT", the name terraform's discovery and credentials use
    data_dir: Path
    ca_file: Path
    proc: Proc
    db_url: str

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def start_tls_server(base: Path, tools_dir: Path, *args: str) -> TLSServer:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file, cert_file, key_file = base / "ca.pem", base / "server.pem", base / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cert_file), append=i > 0)
    port = free_port()
    data_dir = base / "data"
    db_url = databases.new_database(data_dir)
    proc = Proc(
        [
            *OUTPOST,
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--tools-dir",
            str(tools_dir),
            "--tls-cert",
            str(cert_file),
            "--tls-key",
            str(key_file),
            *args,
        ],
        base / "server.log",
        env=server_env(db_url),
    ).start()
    server = TLSServer(host=f"localhost:{port}", data_dir=data_dir, ca_file=ca_file, proc=proc, db_url=db_url)
    context = server.ssl_context()

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"server exited:\n{proc.output()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/api/v2/ping", verify=context, timeout=1).status_code == 204
        except httpx.TransportError:
            return False

    wait_until(up, 60, what="the HTTPS server")
    return server


@dataclass
class CLISetup:
    """An HTTPS server, an organization with its owner's token, and an agent pool with a running agent."""

    server: TLSServer
    org: str
    token: str
    pool_id: str
    agent_name: str
    agent_id: str
    api: OutpostAPI


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory: pytest.TempPathFactory, tools_dir: Path) -> Iterator[CLISetup]:
    base = tmp_path_factory.mktemp("tls")
    # Agent mode only: the built-in agent would be idle, and the machine is shared.
    server = start_tls_server(base, tools_dir, "--no-builtin-agent")
    agent: Proc | None = None
    api: OutpostAPI | None = None
    try:
        org = f"cli-{uuid.uuid4().hex[:8]}"
        token = asyncio.run(bootstrap(server.db_url, org, f"owner-{org}@example.com"))
        api = OutpostAPI(server.url, token, verify=server.ssl_context())
        pool = api.create_pool(org, "cli-pool")
        _, pool_token = api.create_agent_token(pool["id"], "cli agent")
        name = "cli-agent"
        agent = start_agent(
            server.url, pool_token, base / "agent", tools_dir, "--ca-cert", str(server.ca_file), name=name
        )
        agents = wait_until(
            lambda: (
                [a for a in api.agents(pool["id"]) if a["attributes"]["status"] == "idle"]  # type: ignore[union-attr]
                or (None if agent.alive() else pytest.fail(f"agent exited:\n{agent.output()[-3000:]}"))
            ),  # type: ignore[union-attr]
            30,
            what="the agent",
        )
        yield CLISetup(server, org, token, pool["id"], name, agents[0]["id"], api)
    finally:
        if agent is not None:
            agent.stop()
        if api is not None:
            api.close()
        server.proc.stop()
