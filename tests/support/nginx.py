"""A real nginx in front of replicas, configured with the shipped deploy/nginx/outpost.conf.

The sample's `upstream` servers and `listen` line are replaced with the test's ports; every other
directive (timeouts, buffering, body size, next-upstream rules) is the shipped one. nginx runs in the
foreground with its own prefix, temp paths and logs under the test's directory, and its access log
names the replica (upstream address) that served each request.
"""

from __future__ import annotations

import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Proc, free_port, wait_until

SAMPLE = Path(__file__).parents[2] / "deploy" / "nginx" / "outpost.conf"

MAIN = """daemon off;
master_process on;
worker_processes 1;
user root;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format replicas '$request_method $uri $status $upstream_addr $body_bytes_sent';
    access_log {root}/access.log replicas;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/outpost.conf;
}}
"""


@dataclass
class Nginx:
    root: Path
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[list[str]]:
        """One entry per request: method, path, status, upstream address(es), body bytes."""
        path = self.root / "access.log"
        return [line.split(" ") for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        self.proc.stop()


def upstream_lines(servers: list[str]) -> str:
    return "".join(f"    {line}\n" for line in servers)


def start_nginx(root: Path, upstream: list[str], port: int | None = None) -> Nginx:
    """nginx on `port` (free by default) in front of `upstream`, e.g.
    ["server 127.0.0.1:8081 max_fails=1 fail_timeout=10s;", "server 127.0.0.1:8082 backup;"]."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    sample = SAMPLE.read_text()
    config, replaced = re.subn(r"(?m)^    server 127\.0\.0\.1:\d+[^\n]*\n", "", sample)
    assert replaced >= 2, "the sample names its replicas as `server 127.0.0.1:PORT ...;` lines"
    config = config.replace("    keepalive 32;\n", upstream_lines(upstream) + "    keepalive 32;\n", 1)
    config, listens = re.subn(r"(?m)^    listen 80;$", f"    listen 127.0.0.1:{port};", config)
    assert listens == 1
    (root / "outpost.conf").write_text(config)
    (root / "nginx.conf").write_text(MAIN.format(root=root))
    proc = Proc(
        [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")], root / "nginx.out"
    ).start()

    def listening() -> bool:
        if not proc.alive():
            raise RuntimeError(f"nginx exited: {proc.output()}{(root / 'error.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 20, what="nginx")
    return Nginx(root, port, proc)
