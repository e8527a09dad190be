"""Agent pools, agent tokens and agents (managed by the owners team)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.errors import BadRequest, NotFound
from outpost.server import jsonapi
from outpost.server.api import shapes
from outpost.server.auth import member, owner, principal
from outpost.server.context import Outpost, outpost
from outpost.store import agents as agents_store
from outpost.store import pools, revocations
from outpost.store.tables import AgentPool
from outpost.store.users import Principal

router = APIRouter(tags=["agent-pools"])


async def _pool_resource(session: AsyncSession, pool: AgentPool) -> jsonapi.Resource:
    counts = await pools.agent_counts(session, [pool.id])
    linked = [ws.id for ws in await pools.linked_workspaces(session, pool.id)]
    allowed = await pools.allowed_workspaces(session, pool.id)
    return shapes.agent_pool(pool, counts.get(pool.id, 0), linked, allowed)


async def _visible_pool(session: AsyncSession, who: Principal, pool_id: str, *, manage: bool) -> AgentPool:
    pool = await pools.get_pool(session, pool_id)
    assert pool.organization_id is not None
    try:
        await (owner if manage else member)(session, who, pool.organization_id)
    except NotFound:
        raise NotFound(f"Agent pool {pool_id!r} was not found.") from None
    return pool


@router.get("/organizations/{org}/agent-pools")
async def list_pools(
    org: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    search = request.query_params.get("q") or request.query_params.get("search[name]")
    async with app.db.read() as session:
        await member(session, who, org)
        found = await pools.list_pools(session, org)
        if search:
            found = [p for p in found if search in p.name]
        total = len(found)
        found = found[page.offset : page.offset + page.size]
        data = [await _pool_resource(session, p) for p in found]
    return jsonapi.document(data, meta=page.meta(total))


@router.post("/organizations/{org}/agent-pools", status_code=201)
async def create_pool(
    org: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    attrs = jsonapi.attributes_of(body)
    scoped = jsonapi.boolean(attrs, "organization-scoped", True)
    allowed = jsonapi.relationship_ids(body, "allowed-workspaces") or []
    async with app.db.write() as session:
        await owner(session, who, org)
        pool = await pools.create_pool(session, org, attrs.get("name"), bool(scoped), allowed)
        data = await _pool_resource(session, pool)
    return jsonapi.document(data, status=201)


@router.get("/agent-pools/{pool_id}")
async def show_pool(pool_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        pool = await _visible_pool(session, who, pool_id, manage=False)
        return jsonapi.document(await _pool_resource(session, pool))


@router.patch("/agent-pools/{pool_id}")
async def update_pool(
    pool_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    body = await jsonapi.read_body(request)
    attrs = jsonapi.attributes_of(body)
    allowed = jsonapi.relationship_ids(body, "allowed-workspaces")
    async with app.db.write() as session:
        pool = await _visible_pool(session, who, pool_id, manage=True)
        if "name" in attrs and attrs["name"] != pool.name:
            pool.name = pools.check_name(attrs["name"])
        scoped = jsonapi.boolean(attrs, "organization-scoped")
        if scoped is not None:
            pool.organization_scoped = scoped
        if allowed is not None:
            await pools.set_allowed_workspaces(session, pool, allowed)
        await session.flush()
        data = await _pool_resource(session, pool)
    return jsonapi.document(data)


@router.delete("/agent-pools/{pool_id}", status_code=204)
async def delete_pool(pool_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.write() as session:
        pool = await _visible_pool(session, who, pool_id, manage=True)
        await pools.delete_pool(session, pool)
    return Response(status_code=204)


# --- tokens -------------------------------------------------------------------------------------


@router.get("/agent-pools/{pool_id}/authentication-tokens")
async def list_tokens(pool_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        await _visible_pool(session, who, pool_id, manage=True)
        tokens = await pools.list_tokens(session, pool_id)
    return jsonapi.document([shapes.agent_token(t) for t in tokens])


@router.post("/agent-pools/{pool_id}/authentication-tokens", status_code=201)
async def create_token(
    pool_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    attrs = jsonapi.attributes_of(await jsonapi.read_body(request))
    async with app.db.write() as session:
        await _visible_pool(session, who, pool_id, manage=True)
        token, secret = await pools.create_token(session, pool_id, attrs.get("description"), who.user_id)
    return jsonapi.document(shapes.agent_token(token, secret), status=201)


@router.get("/authentication-tokens/{token_id}")
async def show_token(token_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        token = await pools.get_token(session, token_id)
        try:
            await _visible_pool(session, who, token.pool_id, manage=True)
        except NotFound:
            raise NotFound(f"Agent token {token_id!r} was not found.") from None
    return jsonapi.document(shapes.agent_token(token))


@router.delete("/authentication-tokens/{token_id}", status_code=204)
async def revoke_token(token_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.write() as session:
        token = await pools.get_token(session, token_id)
        try:
            await _visible_pool(session, who, token.pool_id, manage=True)
        except NotFound:
            raise NotFound(f"Agent token {token_id!r} was not found.") from None
        await revocations.revoke_agent_token(session, token)
    return Response(status_code=204)


# --- agents -------------------------------------------------------------------------------------


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get("filter[last-ping-since]")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("filter[last-ping-since] must be an ISO 8601 time.", title="invalid filter") from None


@router.get("/agent-pools/{pool_id}/agents")
async def list_agents(
    pool_id: str, request: Request, who: Principal = Depends(principal), app: Outpost = Depends(outpost)
) -> Response:
    page = jsonapi.Page(request)
    since = _since(request)
    status = request.query_params.get("filter[status]")
    async with app.db.read() as session:
        await _visible_pool(session, who, pool_id, manage=False)
        found = await agents_store.list_agents(session, pool_id, since)
    if status:
        found = [a for a in found if a.status == status]
    total = len(found)
    found = found[page.offset : page.offset + page.size]
    return jsonapi.document([shapes.agent(a) for a in found], meta=page.meta(total))


@router.get("/agents/{agent_id}")
async def show_agent(agent_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        agent = await agents_store.get_agent(session, agent_id)
        try:
            await _visible_pool(session, who, agent.pool_id, manage=False)
        except NotFound:
            raise NotFound(f"Agent {agent_id!r} was not found.") from None
    return jsonapi.document(shapes.agent(agent))


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, who: Principal = Depends(principal), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.write() as session:
        agent = await agents_store.get_agent(session, agent_id)
        try:
            await _visible_pool(session, who, agent.pool_id, manage=True)
        except NotFound:
            raise NotFound(f"Agent {agent_id!r} was not found.") from None
        await agents_store.delete_agent(session, agent)
    return Response(status_code=204)
