"""The agent's own Prometheus metrics, served on `--metrics-port` (off by default: agents open no port
unless asked; bind it to 127.0.0.1, the default, or to an interface your scraper reaches).

A registry of its own rather than prometheus-client's global one, so that nothing else that happens to be
imported in the process adds series to it.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_RUNNING = Gauge("outpost_agent_jobs_running", "Jobs this agent is running now.", registry=REGISTRY)
JOBS = Counter(
    "outpost_agent_jobs", "Jobs this agent finished, by phase and outcome.", ["phase", "outcome"], registry=REGISTRY
)
JOB_SECONDS = Histogram(
    "outpost_agent_job_duration_seconds",
    "How long this agent's jobs took, from receipt to the finish report.",
    ["phase"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf")),
    registry=REGISTRY,
)
DOWNLOADS = Counter(
    "outpost_agent_terraform_downloads",
    "Terraform provided by download, by result (verified; failed: not provided, refused or unreachable).",
    ["result"],
    registry=REGISTRY,
)
HOOKS = Counter(
    "outpost_agent_hook_runs", "Hook runs, by hook and result (passed, failed).", ["hook", "result"], registry=REGISTRY
)
CACHE_WAIT = Histogram(
    "outpost_agent_provider_cache_wait_seconds",
    "Time a job waited for the provider plugin cache lock before terraform init.",
    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, float("inf")),
    registry=REGISTRY,
)


class MetricsServer:
    """prometheus-client's own HTTP exposition server, in a daemon thread, stopped with the agent."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.address, registry=REGISTRY)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
