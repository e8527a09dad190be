"""An agent that can reach the server only through an authenticating proxy.

The server listens on the host's 127.0.0.1 over HTTPS with a private CA. The agent runs in a network
namespace of its own (its 127.0.0.1 is not the host's), joined to the host by a veth pair on which the
only thing listening is tinyproxy, with BasicAuth. So the agent works only if it sends its requests
through HTTPS_PROXY (CONNECT, with the credentials from the proxy URL) and trusts the server's CA from
--ca-cert. The test builds the namespace, the veth pair and the proxy, and removes them all.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from outpost.admin import bootstrap
from outpost.api_client import OutpostAPI
from tests.conftest import EXAMPLES
from tests.support.processes import OUTPOST, Proc, clean_env, free_port, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not (shutil.which("ip") and shutil.which("tinyproxy")), reason="needs iproute2 and tinyproxy"),
]

PROXY_USER, PROXY_PASSWORD = "outpost", "proxy-pass-" + secrets.token_hex(4)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Network:
    namespace: str
    host_address: str  # the host's end of the veth pair: where tinyproxy listens

    def run(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


@pytest.fixture
def network() -> Iterator[Network]:
    tag = secrets.token_hex(3)
    namespace, host_if, ns_if = f"outpost-{tag}", f"op{tag}h", f"op{tag}n"
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", namespace)
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{subnet}.2/30", "dev", ns_if)
        _ip("netns", "exec", namespace, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        yield Network(namespace, f"{subnet}.1")
    finally:
        # Deleting the namespace deletes its end of the veth pair, and with it the host's end.
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


@pytest.fixture
def proxy(network: Network, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(
        f'Port {port}\nListen {network.host_address}\nTimeout 120\nMaxClients 50\nLogFile "{log}"\n'
        f"LogLevel Connect\nSyslog Off\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n"
    )
    proc = Proc(["tinyproxy", "-d", "-c", str(conf)], tmp_path / "tinyproxy.out").start()
    try:

        def listening() -> bool:
            try:
                socket.create_connection((network.host_address, port), 0.5).close()
                return True
            except OSError:
                return False

        wait_until(listening, 15, what="tinyproxy")
        yield f"{network.host_address}:{port}", log
    finally:
        proc.stop()


@pytest.fixture
def tls_server(tmp_path: Path, tools_dir: Path) -> Iterator[tuple[str, trustme.CA, OutpostAPI]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    data_dir = tmp_path / "server"
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context()
    ca.configure_trust(context)
    proc = Proc(
        [
            *OUTPOST, "server", "--port", str(port), "--data-dir", str(data_dir), "--no-builtin-agent",
            "--tls-cert", str(cert_file), "--tls-key", str(key_file),
        ],
        tmp_path / "server.log",
    )  # fmt: skip
    try:
        proc.start()

        def up() -> bool:
            if not proc.alive():
                raise RuntimeError(proc.output()[-3000:])
            try:
                return httpx.get(f"{url}/api/v2/ping", verify=context, timeout=1).status_code == 204
            except httpx.TransportError:
                return False

        wait_until(up, 60, what="the TLS server")
        token = asyncio.run(bootstrap(f"sqlite:///{data_dir / 'outpost.db'}", "proxied", "proxied@example.com"))
        api = OutpostAPI(url, token, verify=context)
        yield url, ca, api
        api.close()
    finally:
        proc.stop()


def test_agent_works_only_through_the_authenticating_proxy(
    network: Network,
    proxy: tuple[str, Path],
    tls_server: tuple[str, trustme.CA, OutpostAPI],
    tools_dir: Path,
    tmp_path: Path,
) -> None:
    url, ca, api = tls_server
    proxy_address, proxy_log = proxy
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = url.rsplit(":", 1)[1]

    # The direct route is blocked: from inside the namespace, the server's address answers nothing.
    direct = subprocess.run(
        network.run(sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 3)"),
        capture_output=True,
        text=True,
    )
    assert direct.returncode != 0 and "ConnectionRefusedError" in direct.stderr, direct.stderr

    pool = api.create_pool("proxied", "behind-proxy")
    _, token = api.create_agent_token(pool["id"], "proxy token")

    def agent(name: str, proxy_url: str, *extra: str) -> Proc:
        return Proc(
            network.run(
                *OUTPOST, "agent", "--address", url, "--name", name, "--data-dir", str(tmp_path / name),
                "--tools-dir", str(tools_dir), "--ca-cert", str(ca_file), *extra,
            ),
            tmp_path / f"{name}.log",
            env=clean_env(OUTPOST_AGENT_TOKEN=token, HTTPS_PROXY=proxy_url, NO_PROXY="localhost,.example.invalid"),
        ).start()  # fmt: skip

    # With the wrong password, tinyproxy refuses the tunnel and the agent cannot register.
    refused = agent("wrong-password", f"http://{PROXY_USER}:not-the-password@{proxy_address}")
    working = agent("proxied", f"http://{PROXY_USER}:{PROXY_PASSWORD}@{proxy_address}")
    try:
        wait_until(
            lambda: "POST /register failed (ProxyError: 401 Unauthorized)" in refused.output(),
            30,
            what="the proxy's refusal in the agent's log",
        )
        ws = api.create_workspace("proxied", "through-proxy", execution_mode="agent", agent_pool_id=pool["id"])
        cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")
        run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"}, timeout=180)
        assert run["attributes"]["status"] == "planned", api.read_log(run, "plan") + working.output()[-3000:]
        api.action(run["id"], "apply")
        run = api.wait_for_run(run["id"], {"applied", "errored"}, timeout=180)
        assert run["attributes"]["status"] == "applied", api.read_log(run, "apply")
        assert "proxied" in {a["attributes"]["name"] for a in api.agents(pool["id"])}
        assert "wrong-password" not in {a["attributes"]["name"] for a in api.agents(pool["id"])}
    finally:
        refused.stop()
        assert working.stop() == 0, working.output()[-3000:]
    tunnels = proxy_log.read_text()
    assert f"CONNECT 127.0.0.1:{port}" in tunnels, tunnels[-3000:]
    assert PROXY_PASSWORD not in working.output(), "the proxy password is never logged"
    assert f"through the proxy http://{PROXY_USER}:***@{proxy_address}" in working.output()
