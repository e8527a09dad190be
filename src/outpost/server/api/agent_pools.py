"""Agent pools, agent tokens and agents (managed by the owners team)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.errors import BadRequest, NotFound
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import agents as agents_store
from outpost.store import pools, revocations
from outpost.store.tables import AgentPool

router = APIRouter(tags=["agent-pools"])


async def _pool_resource(session: AsyncSession, pool: AgentPool) -> jsonapi.Resource:
    counts = await pools.agent_counts(session, [pool.id])
    linked = [ws.id for ws in await pools.linked_workspaces(session, pool.id)]
    allowed = await pools.allowed_workspaces(session, pool.id)
    return shapes.agent_pool(pool, counts.get(pool.id, 0), linked, allowed)


async def _visible_pool(session: AsyncSession, caller: Caller, pool_id: str) -> AgentPool:
    """The pool, if the caller's action is allowed in its organization; 404 for other organizations."""
    pool = await pools.get_pool(session, pool_id)
    assert pool.organization_id is not None
    try:
        await caller.organization(session, pool.organization_id)
    except NotFound:
        raise NotFound(f"Agent pool {pool_id!r} was not found.") from None
    return pool


@router.get("/organizations/{org}/agent-pools")
async def list_pools(
    org: str, request: Request, caller: Caller = guard(Action.READ_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    search = request.query_params.get("q") or request.query_params.get("search[name]")
    async with app.db.read() as session:
        await caller.organization(session, org)
        found = await pools.list_pools(session, org)
        if search:
            found = [p for p in found if search in p.name]
        total = len(found)
        found = found[page.offset : page.offset + page.size]
        data = [await _pool_resource(session, p) for p in found]
    return jsonapi.document(data, meta=page.meta(total))


@router.post("/organizations/{org}/agent-pools", status_code=201, openapi_extra=bodies.body("agent-pools"))
async def create_pool(
    org: str, request: Request, caller: Caller = guard(Action.MANAGE_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "agent-pools")
    attrs = jsonapi.attributes_of(body)
    scoped = jsonapi.boolean(attrs, "organization-scoped", True)
    allowed = jsonapi.relationship_ids(body, "allowed-workspaces") or []
    async with app.db.write() as session:
        await caller.organization(session, org)
        pool = await pools.create_pool(session, org, attrs.get("name"), bool(scoped), allowed)
        data = await _pool_resource(session, pool)
    return jsonapi.document(data, status=201)


@router.get("/agent-pools/{pool_id}")
async def show_pool(
    pool_id: str, caller: Caller = guard(Action.READ_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        pool = await _visible_pool(session, caller, pool_id)
        return jsonapi.document(await _pool_resource(session, pool))


@router.patch("/agent-pools/{pool_id}", openapi_extra=bodies.body("agent-pools"))
async def update_pool(
    pool_id: str, request: Request, caller: Caller = guard(Action.MANAGE_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "agent-pools")
    attrs = jsonapi.attributes_of(body)
    allowed = jsonapi.relationship_ids(body, "allowed-workspaces")
    async with app.db.write() as session:
        pool = await _visible_pool(session, caller, pool_id)
        if "name" in attrs and attrs["name"] != pool.name:
            pool.name = pools.check_name(attrs["name"])
        scoped = jsonapi.boolean(attrs, "organization-scoped")
        if scoped is not None:
            pool.organization_scoped = scoped
        if allowed is not None:
            await pools.set_allowed_workspaces(session, pool, allowed)
        await pools.check_linked_allowed(session, pool)
        await session.flush()
        data = await _pool_resource(session, pool)
    return jsonapi.document(data)


@router.delete("/agent-pools/{pool_id}", status_code=204)
async def delete_pool(
    pool_id: str, caller: Caller = guard(Action.MANAGE_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        pool = await _visible_pool(session, caller, pool_id)
        await pools.delete_pool(session, pool)
    return Response(status_code=204)


# --- tokens (show and revoke by id are in tokens.py, shared with user tokens) ---------------------


@router.get("/agent-pools/{pool_id}/authentication-tokens")
async def list_tokens(
    pool_id: str, caller: Caller = guard(Action.MANAGE_AGENT_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        await _visible_pool(session, caller, pool_id)
        tokens = await pools.list_tokens(session, pool_id)
    return jsonapi.document([shapes.agent_token(t) for t in tokens])


@router.post(
    "/agent-pools/{pool_id}/authentication-tokens", status_code=201, openapi_extra=bodies.body("authentication-tokens")
)
async def create_token(
    pool_id: str, request: Request, caller: Caller = guard(Action.MANAGE_AGENT_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "authentication-tokens")
    attrs = jsonapi.attributes_of(body)
    async with app.db.write() as session:
        await _visible_pool(session, caller, pool_id)
        token, secret = await pools.create_token(session, pool_id, attrs.get("description"), caller.user_id)
    return jsonapi.document(shapes.agent_token(token, secret), status=201)


async def show_agent_token(session: AsyncSession, caller: Caller, token_id: str) -> jsonapi.Resource:
    token = await pools.get_token(session, token_id)
    try:
        await _visible_pool(session, caller, token.pool_id)
    except NotFound:
        raise NotFound(f"Authentication token {token_id!r} was not found.") from None
    return shapes.agent_token(token)


async def revoke_agent_token(session: AsyncSession, caller: Caller, token_id: str) -> None:
    token = await pools.get_token(session, token_id)
    try:
        await _visible_pool(session, caller, token.pool_id)
    except NotFound:
        raise NotFound(f"Authentication token {token_id!r} was not found.") from None
    await revocations.revoke_agent_token(session, token)


# --- agents -------------------------------------------------------------------------------------


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get("filter[last-ping-since]")
    if not raw:
        return None
    try:
        since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("filter[last-ping-since] must be an ISO 8601 time.", title="invalid filter") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


@router.get("/agent-pools/{pool_id}/agents")
async def list_agents(
    pool_id: str, request: Request, caller: Caller = guard(Action.READ_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    since = _since(request)
    status = request.query_params.get("filter[status]")
    async with app.db.read() as session:
        await _visible_pool(session, caller, pool_id)
        found = await agents_store.list_agents(session, pool_id, since)
    if status:
        found = [a for a in found if a.status == status]
    total = len(found)
    found = found[page.offset : page.offset + page.size]
    return jsonapi.document([shapes.agent(a) for a in found], meta=page.meta(total))


@router.get("/agents/{agent_id}")
async def show_agent(
    agent_id: str, caller: Caller = guard(Action.READ_AGENT_POOLS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        agent = await agents_store.get_agent(session, agent_id)
        try:
            await _visible_pool(session, caller, agent.pool_id)
        except NotFound:
            raise NotFound(f"Agent {agent_id!r} was not found.") from None
    return jsonapi.document(shapes.agent(agent))


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(
    agent_id: str, caller: Caller = guard(Action.MANAGE_AGENTS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        agent = await agents_store.get_agent(session, agent_id)
        try:
            await _visible_pool(session, caller, agent.pool_id)
        except NotFound:
            raise NotFound(f"Agent {agent_id!r} was not found.") from None
        await agents_store.delete_agent(session, agent)
    return Response(status_code=204)
