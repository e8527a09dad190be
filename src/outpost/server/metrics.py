"""Prometheus metrics at /metrics, for a scraper holding the `--metrics-token` bearer token.

Two kinds of series:
- counted from the database when scraped (agents by pool and status, queue depth and running jobs per
  pool, runs by organization and status): a custom collector over one snapshot taken per scrape, so the
  numbers are those of every replica together and nothing polls in the background;
- observed by this process as things happen (dispatch latency, job durations): histograms, per replica,
  to be summed across replicas (`sum by (le) (rate(..._bucket[5m]))`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from outpost.domain.agents import AgentStatus
from outpost.domain.runs import RunStatus
from outpost.errors import NotFound, Unauthorized
from outpost.server.auth import bearer
from outpost.server.context import Outpost, outpost
from outpost.store import metrics as store_metrics
from outpost.timeutil import utcnow

router = APIRouter(tags=["operations"])

# In-process histograms: observed where things happen, exposed at every scrape.
LIVE = CollectorRegistry(auto_describe=True)
DISPATCH_SECONDS = Histogram(
    "outpost_dispatch_latency_seconds",
    "From a job being queued to an agent claiming it (first claims only), by pool.",
    ["pool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf")),
    registry=LIVE,
)
JOB_SECONDS = Histogram(
    "outpost_job_duration_seconds",
    "From an agent starting a job to its finish report, by phase and outcome.",
    ["phase", "outcome"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, float("inf")),
    registry=LIVE,
)


DISPATCHED = Counter(
    "outpost_jobs_dispatched",
    "Jobs given to agents, by pool and way: handed (to a waiting long-poll, in the transaction that queued "
    "the job), claimed (by a poll, on arrival or woken) or redelivered (after an answer that was lost).",
    ["pool", "way"],
    registry=LIVE,
)


def observe_dispatch(pool_id: str, queued_at: datetime | None, attempt: int, way: str) -> None:
    DISPATCHED.labels(pool_id, way).inc()
    if queued_at is not None and attempt == 1:
        DISPATCH_SECONDS.labels(pool_id).observe(max(0.0, (utcnow() - queued_at).total_seconds()))


def observe_job(phase: str, outcome: str, started_at: datetime | None) -> None:
    if started_at is not None:
        JOB_SECONDS.labels(phase, outcome).observe(max(0.0, (utcnow() - started_at).total_seconds()))


class SnapshotCollector(Collector):
    """The database's counts, as gauges; every pool gets every agent status (zeros included) so that
    alerts such as `outpost_agents{status="idle"} == 0` see a value rather than nothing."""

    def __init__(self, snap: store_metrics.Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["pool", "pool_name", "organization"]
        agents = GaugeMetricFamily("outpost_agents", "Agents by pool and status.", labels=[*labels, "status"])
        queued = GaugeMetricFamily("outpost_jobs_queued", "Jobs waiting for an agent, by pool.", labels=labels)
        running = GaugeMetricFamily(
            "outpost_jobs_active", "Jobs assigned to or running on an agent, by pool.", labels=labels
        )
        for pool in self.snap.pools:
            values = [pool.pool_id, pool.pool_name, pool.organization]
            for agent_status in AgentStatus:
                count = self.snap.agents.get((pool.pool_id, agent_status.value), 0)
                agents.add_metric([*values, agent_status.value], count)
            queued.add_metric(values, self.snap.queued.get(pool.pool_id, 0))
            running.add_metric(values, self.snap.running.get(pool.pool_id, 0))
        runs = GaugeMetricFamily("outpost_runs", "Runs by organization and status.", labels=["organization", "status"])
        organizations = {org for org, _ in self.snap.runs}
        for org in sorted(organizations):
            for run_status in RunStatus:
                runs.add_metric([org, run_status.value], self.snap.runs.get((org, run_status.value), 0))
        yield from (agents, queued, running, runs)


def _authorize(app: Outpost, request: Request) -> None:
    expected = app.config.metrics_token
    if not expected:
        raise NotFound(
            "Metrics are off: start the server with OUTPOST_METRICS_TOKEN (or --metrics-token) and scrape "
            "/metrics with that bearer token."
        )
    given = bearer(request)
    digest = hashlib.sha256
    if given is None or not hmac.compare_digest(digest(given.encode()).digest(), digest(expected.encode()).digest()):
        raise Unauthorized("Send the metrics token as 'Authorization: Bearer <token>'.")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, app: Outpost = Depends(outpost)) -> Response:
    _authorize(app, request)
    async with app.db.read() as session:
        snap = await store_metrics.snapshot(session)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    body = generate_latest(registry) + generate_latest(LIVE)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
