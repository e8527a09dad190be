"""The agent protocol client: one place that decides what is retried and what is fatal.

Connection errors, 429 and 5xx are retried with capped exponential backoff and full jitter, for as long
as the call's budget allows (most calls: for ever, since nothing may be lost while the server is away).
401 and 403 on the agent's session are fatal: the agent exits with the code for the server's reason.
On a job's own endpoints they mean the server gave up on the job (fenced): only that job stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from outpost import AGENT_PROTOCOL_VERSION, __version__
from outpost.agent.exitcodes import REASONS, ExitCode
from outpost.errors import AgentError, AgentFatal, Retryable

log = logging.getLogger("outpost.agent.client")

PREFIX = "/api/agent/v1"


class JobGone(AgentError):
    """The server no longer accepts anything for this job (canceled, errored, or handed elsewhere)."""


class ProtocolError(AgentError):
    """The server refused a request as malformed: a bug on one side, not worth retrying."""


@dataclass(frozen=True)
class Registration:
    agent_id: str
    session_token: str
    heartbeat_interval: float
    long_poll_timeout: float


class Appended(NamedTuple):
    size: int  # the server's log size: where the next append starts
    cancel: list[dict[str, str]]  # the job's standing cancel orders
    interval: float | None  # seconds to gather output before the next append, if the server says


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def _detail(resp: httpx.Response) -> tuple[str, str | None]:
    try:
        err = resp.json()["errors"][0]
        return str(err.get("detail") or err.get("title")), (err.get("meta") or {}).get("reason")
    except Exception:
        return resp.text[:200] or resp.reason_phrase, None


# Idle connections are kept longer than the heartbeat interval (10 s; httpx keeps them 5 s by default), so
# a heartbeat reuses its connection instead of opening a new one each time: with 1000 idle agents, 100
# connections a second opened and closed on both sides. Shorter than the server's keep-alive (75 s), and
# than the idle timeouts of the proxies and load balancers usually found in between (60 s and more).
LIMITS = httpx.Limits(keepalive_expiry=45.0)


class Client:
    def __init__(
        self,
        address: str,
        *,
        unix_socket: Path | None = None,
        http_options: dict[str, Any] | None = None,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # `http_options`: TLS trust and proxy (network.http_options); a Unix socket needs neither.
        # `transport`: a seam for many simulated agents in one process (the benchmarks).
        options: dict[str, Any] = {**(http_options or {}), "limits": LIMITS}
        if transport is not None:
            options = {"transport": transport}
        elif unix_socket is not None:
            options = {"transport": httpx.AsyncHTTPTransport(uds=str(unix_socket), limits=LIMITS)}
        self.http = httpx.AsyncClient(
            base_url=address.rstrip("/"),
            timeout=httpx.Timeout(30.0, connect=10.0),
            headers={"User-Agent": f"outpost-agent/{__version__}"},
            **options,
        )
        self.backoff = backoff or Backoff()
        self.session_token: str | None = None
        self.stopping = asyncio.Event()  # set at a forced exit: retries give up

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        job: bool = False,
        budget: float | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while True:
            problem: str
            try:
                resp = await self.http.request(
                    method,
                    PREFIX + path,
                    headers=headers,
                    timeout=httpx.Timeout(timeout, connect=10.0) if timeout else httpx.USE_CLIENT_DEFAULT,
                    **kwargs,
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                code = resp.status_code
                if code < 300 or code in ok:
                    return resp
                if code == 429 or code >= 500:
                    problem = f"HTTP {code}"
                else:
                    detail, reason = _detail(resp)
                    if job and code in (401, 403, 404, 410):
                        raise JobGone(detail)
                    if code in (401, 403):
                        raise AgentFatal(detail, int(REASONS.get(reason or "", ExitCode.SESSION_ENDED)))
                    if reason in REASONS:
                        raise AgentFatal(detail, int(REASONS[reason]))
                    raise ProtocolError(f"{method} {path}: HTTP {code}: {detail}")
            attempt += 1
            if self.stopping.is_set() or (budget is not None and loop.time() - started > budget):
                raise Retryable(f"{method} {path} failed: {problem}")
            delay = self.backoff.delay(attempt)
            if attempt == 1 or attempt % 10 == 0:
                log.warning("%s %s failed (%s); retrying in %.1f s", method, path, problem, delay)
            await asyncio.sleep(delay)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def register(self, pool_token: str, name: str | None, capacity: int) -> Registration:
        body = {
            "name": name,
            "hostname": socket.gethostname(),
            "version": __version__,
            "protocol": AGENT_PROTOCOL_VERSION,
            "capacity": capacity,
        }
        try:
            resp = await self._send("POST", "/register", token=pool_token, json=body)
        except AgentFatal as exc:
            if exc.exit_code == ExitCode.SESSION_ENDED:
                raise AgentFatal(f"The pool token was refused: {exc}", int(ExitCode.TOKEN_REJECTED)) from None
            raise
        data = resp.json()
        self.session_token = data["session_token"]
        spoken = data.get("protocol", AGENT_PROTOCOL_VERSION)
        if spoken != AGENT_PROTOCOL_VERSION:  # a server that accepted us but speaks another protocol
            server_version = data.get("server_version", "of the server")
            with contextlib.suppress(AgentError):
                await self.deregister(budget=5.0)
            raise AgentFatal(
                f"The server (Outpost {server_version}) answered in agent protocol {spoken}; this agent "
                f"(Outpost {__version__}) speaks {AGENT_PROTOCOL_VERSION}. Install Outpost {server_version} "
                "on the agent's machine.",
                int(ExitCode.PROTOCOL_MISMATCH),
            )
        return Registration(
            agent_id=data["agent_id"],
            session_token=data["session_token"],
            heartbeat_interval=float(data["heartbeat_interval"]),
            long_poll_timeout=float(data["long_poll_timeout"]),
        )

    async def poll(
        self, accept: int, running: list[str], cancels_applied: dict[str, str], wait: float
    ) -> dict[str, Any]:
        resp = await self._send(
            "POST",
            "/poll",
            token=self.session_token,
            timeout=wait + 15,
            json={"accept": accept, "running": running, "cancels_applied": cancels_applied, "wait": wait},
        )
        result: dict[str, Any] = resp.json()
        return result

    async def heartbeat(self, running: list[str]) -> dict[str, Any]:
        resp = await self._send("POST", "/heartbeat", token=self.session_token, budget=None, json={"running": running})
        result: dict[str, Any] = resp.json()
        return result

    async def deregister(self, budget: float = 10.0) -> None:
        await self._send("POST", "/deregister", token=self.session_token, budget=budget)

    # --- one job -----------------------------------------------------------------------------------

    async def job(self, job_id: str, token: str) -> dict[str, Any]:
        resp = await self._send("GET", f"/jobs/{job_id}", token=token, job=True)
        result: dict[str, Any] = resp.json()
        return result

    async def start(self, job_id: str, token: str) -> None:
        await self._send("POST", f"/jobs/{job_id}/start", token=token, job=True)

    async def download(self, job_id: str, token: str, what: str) -> bytes | None:
        resp = await self._send("GET", f"/jobs/{job_id}/{what}", token=token, job=True, timeout=300)
        return None if resp.status_code == 204 else resp.content

    async def upload(self, job_id: str, token: str, what: str, data: bytes) -> dict[str, Any]:
        resp = await self._send("PUT", f"/jobs/{job_id}/{what}", token=token, job=True, content=data, timeout=300)
        return resp.json() if resp.content else {}

    async def append_log(self, job_id: str, token: str, offset: int, data: bytes) -> Appended:
        """Send bytes at `offset`; the answer says the server's log size, the job's standing cancel orders
        and how long to gather output before the next append."""
        resp = await self._send(
            "PUT",
            f"/jobs/{job_id}/logs",
            token=token,
            job=True,
            ok=(416,),
            params={"offset": offset},
            content=data,
        )
        if resp.status_code == 416:
            return Appended(int(resp.json()["errors"][0]["meta"]["size"]), [], None)
        body = resp.json()
        interval = body.get("interval")  # an older server does not say
        return Appended(
            int(body["size"]),
            list(body.get("cancel", [])),
            float(interval) if isinstance(interval, int | float) else None,
        )

    async def finish(self, job_id: str, token: str, result: dict[str, Any]) -> None:
        await self._send("POST", f"/jobs/{job_id}/finish", token=token, job=True, json=result)
