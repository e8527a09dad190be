"""Agent protocol endpoints.

Three credentials, each for its own part: the pool token registers (nothing else); the agent session
credential polls, heartbeats and deregisters; a job credential, valid only while its job is active,
reads and writes everything of that one job. A refusal that means "stop for good" is a 403 whose
`meta.reason` says why, so the agent can exit with the matching code.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost import AGENT_PROTOCOL_VERSION, SUPPORTED_AGENT_PROTOCOLS, __version__
from outpost.domain.agents import AgentStatus
from outpost.domain.jobs import JobOutcome, JobRight, Phase
from outpost.errors import BadRequest, Conflict, Unauthorized, Unprocessable
from outpost.ids import TokenKind, hash_secret, secret_kind
from outpost.server import jsonapi, log_watch, metrics
from outpost.server.auth import bearer
from outpost.server.context import Outpost, outpost
from outpost.store import agents as agents_store
from outpost.store import jobs as jobs_store
from outpost.store import logs, pools
from outpost.store.jobs import Result
from outpost.store.tables import Agent, Apply, Plan
from outpost.timeutil import utcnow

router = APIRouter(prefix="/api/agent/v1", tags=["agent protocol"])

MAX_CHUNK = 4 * 1024 * 1024
MAX_ARTIFACT = 256 * 1024 * 1024


class ProtocolMismatch(BadRequest):
    """Agent protocol version not supported."""

    reason = "protocol_mismatch"


_CREDENTIALS = {
    TokenKind.POOL: "the agent pool's token (opa_...)",
    TokenKind.AGENT_SESSION: "the agent's session credential (ops_...)",
    TokenKind.JOB: "the job's own credential (opj_...)",
}


def _token(request: Request, kind: str) -> str:
    """The bearer credential, if it is of the kind this endpoint takes: each credential has its one part."""
    token = bearer(request)
    if token is None:
        raise Unauthorized("Send the credential as 'Authorization: Bearer <token>'.")
    if secret_kind(token) != kind:
        raise Unauthorized(f"This endpoint takes {_CREDENTIALS[kind]}.")
    return token


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _raw(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise Unprocessable(f"The upload is over {limit} bytes.", title="too large")
    return bytes(data)


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise Unprocessable(f'"{key}" must be a whole number from {lo} to {hi}.')
    return value


@router.post("/register", status_code=201)
async def register(request: Request, app: Outpost = Depends(outpost)) -> Response:
    body = await jsonapi.read_body(request)
    protocol = body.get("protocol", AGENT_PROTOCOL_VERSION)
    if protocol not in SUPPORTED_AGENT_PROTOCOLS:
        raise ProtocolMismatch(_mismatch(protocol, str(body.get("version") or "unknown")))
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise Unprocessable('"name" must be a string of at most 200 characters.')
    capacity = _int(body, "capacity", 1, 1, 64)
    async with app.db.write() as session:
        token = await pools.authenticate_pool_token(session, _token(request, TokenKind.POOL))
        agent, secret = await agents_store.register(
            session,
            token,
            name=name,
            ip_address=_client_ip(request),
            hostname=str(body.get("hostname") or "")[:255] or None,
            version=str(body.get("version") or "")[:64] or None,
            capacity=capacity,
        )
    app.remember_agent(hash_secret(secret), agent.id, agent.pool_id)
    return JSONResponse(
        {
            "agent_id": agent.id,
            "pool_id": agent.pool_id,
            "session_token": secret,
            "heartbeat_interval": app.config.heartbeat_interval,
            "long_poll_timeout": app.config.long_poll_timeout,
            "protocol": protocol,  # the one both sides speak from now on
            "server_version": __version__,
        },
        status_code=201,
    )


def _mismatch(protocol: object, agent_version: str) -> str:
    """Which way the versions differ, and the one thing to do about it."""
    lowest, highest = min(SUPPORTED_AGENT_PROTOCOLS), max(SUPPORTED_AGENT_PROTOCOLS)
    speaks = f"agent protocol {lowest}" if lowest == highest else f"agent protocols {lowest} to {highest}"
    if isinstance(protocol, int) and not isinstance(protocol, bool) and protocol < lowest:
        age = "too old"
    elif isinstance(protocol, int) and not isinstance(protocol, bool):
        age = "too new"
    else:
        age = "not understood"
    return (
        f"This agent (Outpost {agent_version}, agent protocol {protocol}) is {age} for this server "
        f"(Outpost {__version__}, {speaks}). Install Outpost {__version__} on the agent's machine."
    )


def _pending_orders(orders: list[dict[str, str]], applied: dict[str, Any]) -> list[dict[str, str]]:
    rank = {"cancel": 1, "force": 2}
    return [o for o in orders if rank[o["kind"]] > rank.get(str(applied.get(o["job"])), 0)]


@router.post("/poll")
async def poll(request: Request, app: Outpost = Depends(outpost)) -> Response:
    """Long-poll: answered the moment a job is assigned or an order (cancel, exit) arrives.

    The agent lists the jobs it runs; a job assigned to it that it does not list was lost on the way
    (an answer cut off, a poll the agent abandoned) and is delivered again with a fresh credential.
    """
    body = await jsonapi.read_body(request)
    secret = _token(request, TokenKind.AGENT_SESSION)
    accept = _int(body, "accept", 0, 0, 64)
    applied = body.get("cancels_applied") or {}
    running = body.get("running") or []
    if not isinstance(applied, dict):
        raise Unprocessable('"cancels_applied" must be an object.')
    if not isinstance(running, list) or not all(isinstance(j, str) for j in running):
        raise Unprocessable('"running" must be a list of job ids.')
    wait = body.get("wait", app.config.long_poll_timeout)
    if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
        raise Unprocessable('"wait" must be a number of seconds.')
    deadline = asyncio.get_running_loop().time() + min(float(wait), app.config.long_poll_timeout)
    session_hash = hash_secret(secret)
    agent_id, pool_id = app.known_agent(session_hash) or await _learn_agent(app, secret, session_hash)
    # Notice an agent that gave up on this poll (it re-polls when a slot frees): its waiter goes at once.
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        return await _poll(
            app, request, secret, session_hash, agent_id, pool_id, accept, applied, running, deadline, gone
        )
    finally:
        gone.cancel()


async def _learn_agent(app: Outpost, secret: str, session_hash: str) -> tuple[str, str]:
    """Which agent and pool a session credential names (for a session registered through another replica,
    or before this process restarted)."""
    async with app.db.read() as session:
        agent = await agents_store.authenticate_session(session, secret)
        return app.remember_agent(session_hash, agent.id, agent.pool_id)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _poll(
    app: Outpost,
    request: Request,
    secret: str,
    session_hash: str,
    agent_id: str,
    pool_id: str,
    accept: int,
    applied: dict[str, Any],
    running: list[str],
    deadline: float,
    gone: asyncio.Future[None],
) -> Response:
    loop = asyncio.get_running_loop()
    lease = timedelta(seconds=app.config.job_lease)
    ip_address = _client_ip(request)

    async def look(
        session: AsyncSession, *, lock: bool
    ) -> tuple[list[dict[str, str]], list[str], bool, tuple[Agent, int] | None]:
        """Orders for the agent, jobs lost on the way to it, whether to try claiming one, and (when `lock`,
        in a write transaction) the agent locked with its active job count, for the claim to build on."""
        epoch = app.quiet.epoch
        agent = await agents_store.authenticate_session(session, secret, lock=lock)
        held = await jobs_store.agent_jobs(session, agent_id)
        orders = _pending_orders(held.orders(), applied)
        queued = accept > 0 and not orders
        queued = queued and (lock or await any_queued(session))
        _note_if_quiet(app, session_hash, agent, held, ip_address, epoch)
        return orders, held.undelivered(running), queued, ((agent, held.active) if lock else None)

    async def look_quietly() -> bool | None:
        """For a quiet agent (outpost.server.quiet) that runs nothing: no order or lost job can be waiting
        for it, so only whether its pool has work (None: not quiet, look properly)."""
        if running or applied or app.quiet.get(session_hash, ip_address) is None:
            return None
        if accept == 0 or app.dispatcher.known_empty(pool_id):
            return False
        async with app.db.read() as session:
            return await any_queued(session)

    async def any_queued(session: AsyncSession) -> bool:
        """Whether the pool has a queued job, read unless a read that began a moment ago found none and
        no job was announced since (Dispatcher.known_empty: most idle polls of a large pool)."""
        if app.dispatcher.known_empty(pool_id):
            return False
        epoch, began = app.dispatcher.queue_epoch, time.monotonic()
        queued = await jobs_store.any_queued(session, pool_id)
        if not queued:
            app.dispatcher.found_empty(pool_id, began, epoch)
        return queued

    async def take(
        session: AsyncSession, lost: list[str], queued: bool, locked: tuple[Agent, int] | None = None
    ) -> list[jobs_store.Claimed]:
        claimed = []
        for job_id in lost:
            again = await jobs_store.redeliver(session, job_id, agent_id)
            if again is not None:
                claimed.append(again)
        if queued and not claimed:
            fresh = await jobs_store.claim(session, agent_id, lease, locked=locked)
            if fresh is not None:
                claimed.append(fresh)
        return claimed

    async def hand(session: AsyncSession) -> list[jobs_store.Claimed] | None:
        """Inside another request's write transaction that queued a job (outpost.server.context): what the
        woken poll would do below, if it can be done at once, without waiting for a lock or raising there."""
        agent = await agents_store.lock_session_at_once(session, secret)
        if agent is None:
            return None
        held = await jobs_store.agent_jobs(session, agent_id)
        if _pending_orders(held.orders(), applied) or held.undelivered(running):
            return None  # news to answer with first: woken, the poll looks itself
        fresh = await jobs_store.claim(session, agent_id, lease, locked=(agent, held.active))
        return None if fresh is None else [fresh]

    woken_for_job = False
    while True:
        with app.dispatcher.waiting(
            pool_id, agent_id, for_jobs=accept > 0, hand=hand if accept > 0 else None
        ) as waiter:
            if woken_for_job:
                # Woken because a job was queued: look and claim in one write transaction, not a read
                # followed by a write, with the agent locked by its authentication (this is the dispatch
                # path, and every statement is latency).
                async with app.db.write() as session:
                    orders, lost, queued, locked = await look(session, lock=True)
                    claimed = await take(session, lost, queued, locked)
            else:
                # Idle polls only read: on SQLite a write would queue behind every other writer.
                quiet = await look_quietly()
                if quiet is not None:
                    orders, lost, queued = [], [], quiet
                else:
                    async with app.db.read() as session:
                        orders, lost, queued, _ = await look(session, lock=False)
                claimed = []
                if lost or queued:
                    async with app.db.write() as session:
                        claimed = await take(session, lost, queued)
            if orders or claimed:
                return _jobs_answer(app, agent_id, pool_id, claimed, orders, "claimed")
            remaining = deadline - loop.time()
            if remaining <= 0 or app.dispatcher.closed or not await waiter.wait(remaining, gone):
                return JSONResponse({"jobs": [], "cancel": []})
            if waiter.reason == "handed":
                return _jobs_answer(app, agent_id, pool_id, waiter.answer, [], "handed")
            woken_for_job = waiter.reason == "job" and accept > 0


def _jobs_answer(
    app: Outpost, agent_id: str, pool_id: str, claimed: list[jobs_store.Claimed], orders: list[dict[str, str]], way: str
) -> Response:
    if claimed:
        app.quiet.forget(agent_id)  # busy now: its heartbeats renew the job's lease
    for job in claimed:
        metrics.observe_dispatch(pool_id, job.queued_at, job.attempt, "redelivered" if job.redelivered else way)
    jobs = [{"id": c.job_id, "token": c.token, "phase": c.phase, "run_id": c.run_id} for c in claimed]
    return JSONResponse({"jobs": jobs, "cancel": orders})


@router.post("/heartbeat")
async def heartbeat(request: Request, app: Outpost = Depends(outpost)) -> Response:
    body = await jsonapi.read_body(request)
    secret = _token(request, TokenKind.AGENT_SESSION)
    ip_address = _client_ip(request)
    # Most heartbeats come from idle agents and change nothing but a timestamp: they are answered from a
    # read (revocation, errored status and cancel orders take effect at once) and their time is written
    # in a batch (outpost.server.pings). Any other heartbeat is a write transaction of its own.
    # A quiet agent's (idle, nothing to tell it, outpost.server.quiet) is answered without even the read.
    session_hash = hash_secret(secret)
    quiet = app.quiet.get(session_hash, ip_address)
    if quiet is not None:
        app.pings.record(quiet.agent_id, quiet.token_id, utcnow())
        return _heartbeat_answer(app, [])
    known = app.known_agent(session_hash)
    running = body.get("running")
    if known is None or not (isinstance(running, list) and running):
        epoch = app.quiet.epoch
        async with app.db.read() as session:
            agent = await agents_store.authenticate_session(session, secret)
            held = await jobs_store.agent_jobs(session, agent.id)
        known = app.remember_agent(session_hash, agent.id, agent.pool_id)
        if held.active == 0 and agent.status == AgentStatus.IDLE.value and ip_address in (None, agent.ip_address):
            app.pings.record(agent.id, agent.token_id, utcnow())
            _note_if_quiet(app, session_hash, agent, held, ip_address, epoch)
            return _heartbeat_answer(app, held.orders())
    # A busy agent's heartbeat (it says it runs jobs, and this process knows it: the read that would only
    # tell it to write is skipped) renews its jobs' leases. Whatever the agent says, the write decides:
    # a revoked session fails the authentication below and the lease renewal goes with the rollback.
    async with app.db.write() as session:
        # Rows are locked job before agent, the order in which finishing a job takes them (job, run,
        # agent): the other order deadlocks with a job finishing at the same moment.
        await jobs_store.renew_leases(session, known[0], timedelta(seconds=app.config.job_lease))
        agent = await agents_store.authenticate_session(session, secret, lock=True)
        held = await jobs_store.agent_jobs(session, agent.id)
        agents_store.ping(agent, ip_address, busy=held.active > 0)
    # The token's last-used time (written at most once a minute) goes with the idle agents' batch.
    app.pings.record(agent.id, agent.token_id, utcnow())
    return _heartbeat_answer(app, held.orders())


def _note_if_quiet(
    app: Outpost, session_hash: str, agent: Agent, held: jobs_store.AgentJobs, ip_address: str | None, epoch: int
) -> None:
    """After a read found the agent idle, holding no job and owed no order, from its known address: its
    next heartbeats and polls skip that read (outpost.server.quiet). `epoch`: taken before the read."""
    if not held.rows and agent.status == AgentStatus.IDLE.value and ip_address in (None, agent.ip_address):
        app.quiet.add(session_hash, agent.id, agent.token_id, ip_address, epoch=epoch)


def _heartbeat_answer(app: Outpost, orders: list[dict[str, str]]) -> Response:
    return JSONResponse({"action": "continue", "heartbeat_interval": app.config.heartbeat_interval, "cancel": orders})


@router.post("/deregister", status_code=204)
async def deregister(request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.write() as session:
        agent = await agents_store.authenticate_session(session, _token(request, TokenKind.AGENT_SESSION), lock=True)
        await agents_store.deregister(session, agent)
        await jobs_store.requeue_unstarted(session, agent.id)
    return Response(status_code=204)


# --- one job, with its own credential -------------------------------------------------------------


@router.get("/jobs/{job_id}")
async def job_details(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        job = await jobs_store.authenticate(session, job_id, _token(request, TokenKind.JOB), JobRight.READ)
        return JSONResponse(await jobs_store.payload(session, job, app.box))


@router.post("/jobs/{job_id}/start", status_code=204)
async def start(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.write() as session:
        job = await jobs_store.authenticate(session, job_id, _token(request, TokenKind.JOB), JobRight.READ, lock=True)
        await jobs_store.start(session, job)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/configuration")
async def configuration(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        job = await jobs_store.authenticate(
            session, job_id, _token(request, TokenKind.JOB), JobRight.READ_CONFIGURATION
        )
        data = await jobs_store.configuration(session, job)
    return Response(data, media_type="application/gzip")


@router.get("/jobs/{job_id}/state")
async def current_state(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        job = await jobs_store.authenticate(session, job_id, _token(request, TokenKind.JOB), JobRight.READ_STATE)
        data = await jobs_store.current_state(session, job)
    if data is None:
        return Response(status_code=204)
    return Response(data, media_type="application/json")


@router.get("/jobs/{job_id}/plan-file")
async def get_plan_file(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        job = await jobs_store.authenticate(session, job_id, _token(request, TokenKind.JOB), JobRight.READ_PLAN)
        data = await jobs_store.plan_file(session, job)
    return Response(data, media_type="application/octet-stream")


@router.put("/jobs/{job_id}/plan-file", status_code=204)
async def put_plan_file(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    data = await _raw(request, MAX_ARTIFACT)
    async with app.db.write() as session:
        job = await jobs_store.authenticate(
            session, job_id, _token(request, TokenKind.JOB), JobRight.WRITE_PLAN, lock=True
        )
        await jobs_store.store_plan(session, job, "file", data)
    return Response(status_code=204)


@router.put("/jobs/{job_id}/plan-json", status_code=204)
async def put_plan_json(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    data = await _raw(request, MAX_ARTIFACT)
    async with app.db.write() as session:
        job = await jobs_store.authenticate(
            session, job_id, _token(request, TokenKind.JOB), JobRight.WRITE_PLAN_JSON, lock=True
        )
        await jobs_store.store_plan(session, job, "json", data)
    return Response(status_code=204)


@router.put("/jobs/{job_id}/state")
async def put_state(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    data = await _raw(request, MAX_ARTIFACT)
    async with app.db.write() as session:
        job = await jobs_store.authenticate(
            session, job_id, _token(request, TokenKind.JOB), JobRight.WRITE_STATE, lock=True
        )
        sv_id = await jobs_store.store_state(session, job, data)
    return JSONResponse({"state_version_id": sv_id})


@router.put("/jobs/{job_id}/logs")
async def append_log(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    raw_offset = request.query_params.get("offset", "")
    if not raw_offset.isdigit():
        raise BadRequest("offset must be a whole number of bytes.")
    data = await _raw(request, MAX_CHUNK)
    async with app.db.write() as session:
        connection = await session.connection()
        job = await jobs_store.authenticate_columns(
            connection, job_id, _token(request, TokenKind.JOB), JobRight.WRITE_LOG
        )
        table = Plan if job.phase == Phase.PLAN.value else Apply
        try:
            appended = await logs.append_to_run(session, table, job.run_id, int(raw_offset), data)
        except logs.LogGap as gap:
            return JSONResponse(jsonapi.error_body(416, gap.title, gap.detail, {"size": gap.size}), status_code=416)
    # The answer carries this job's standing cancel request, read with the job's row, and how long to gather
    # output before the next append, read with the log's.
    return JSONResponse(
        {
            "size": appended.size,
            "cancel": job.cancel_orders(),
            "interval": log_watch.interval(appended.watched_at, utcnow()),
        }
    )


@router.post("/jobs/{job_id}/finish", status_code=204)
async def finish(job_id: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    body = await jsonapi.read_body(request)
    try:
        outcome = JobOutcome(str(body.get("outcome")))
    except ValueError:
        raise Unprocessable(f'"outcome" must be one of {", ".join(o.value for o in JobOutcome)}.') from None
    counts = {k: _int(body, k, 0, 0, 10**9) for k in ("additions", "changes", "destructions")}
    log_size = _int(body, "log_size", 0, 0, 2**62)
    message = body.get("message") or ""
    if not isinstance(message, str):
        raise Unprocessable('"message" must be a string.')
    async with app.db.write() as session:
        job = await jobs_store.authenticate(session, job_id, _token(request, TokenKind.JOB), JobRight.FINISH, lock=True)
        run, phase = await jobs_store.run_and_phase(session, job)
        stored = phase.log_size
        if stored < log_size:
            raise Conflict(
                f"The server holds {stored} of {log_size} log bytes: send the rest first.", title="log incomplete"
            )
        await jobs_store.finish(
            session,
            job,
            run,
            phase,
            Result(outcome=outcome, message=message[:4000], has_changes=bool(body.get("has_changes")), **counts),
        )
    metrics.observe_job(job.phase, outcome.value, job.started_at)
    return Response(status_code=204)
