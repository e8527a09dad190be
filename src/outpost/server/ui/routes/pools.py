"""Agents: the organization's pools, a pool's live agent list, its workspaces and its tokens."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from outpost.domain.permissions import Action
from outpost.errors import OutpostError, Unprocessable
from outpost.server.context import Outpost, outpost
from outpost.server.ui import access, live, render
from outpost.server.ui.routes.common import context, csrf_checked, field, server_address, signed_in
from outpost.server.ui.sessions import WebUser, forget_secret, remember_secret, take_secret
from outpost.store import agents as agents_store
from outpost.store import overviews, pools, revocations
from outpost.store.tables import AgentPool

router = APIRouter(dependencies=[Depends(csrf_checked)])


def pool_url(org: str, pool_id: str, **query: str) -> str:
    url = f"/app/{quote(org, safe='')}/pools/{quote(pool_id, safe='')}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return url


# --- the pool list ------------------------------------------------------------------------------


async def _pools_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    *,
    error: str | None = None,
    status: int = 200,
    name: str = "",
) -> Response:
    async with app.db.read() as session:
        await access.organization(session, user.principal, org, Action.READ_AGENT_POOLS)
        found = await pools.list_pools(session, org)
        ids = [p.id for p in found]
        counts = await pools.agent_counts(session, ids)
        workspace_counts = await overviews.workspace_counts(session, ids)
        can_manage = await access.may(session, user.principal, org, Action.MANAGE_AGENT_POOLS)
    return render.page(
        request,
        "pools/list.html",
        context(
            request,
            user,
            title="Agent pools",
            org=org,
            area="pools",
            pools=found,
            counts=counts,
            workspace_counts=workspace_counts,
            can_manage=can_manage,
            error=error,
            name=name,
        ),
        status=status,
    )


@router.get("/{org}/pools")
async def list_pools(
    org: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _pools_page(request, app, user, org)


@router.post("/{org}/pools")
async def create_pool(
    org: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    form = await request.form()
    name = field(form, "name")
    try:
        async with app.db.write() as session:
            await access.organization(session, user.principal, org, Action.MANAGE_AGENT_POOLS)
            pool = await pools.create_pool(session, org, name, True, [])
    except OutpostError as exc:
        return await _pools_page(request, app, user, org, error=exc.detail, status=exc.status, name=name)
    return render.redirect(pool_url(org, pool.id, done="pool-created"))


# --- one pool -----------------------------------------------------------------------------------


async def _agents_context(session: AsyncSession, pool_id: str) -> dict[str, Any]:
    found = await agents_store.list_agents(session, pool_id)
    labels = await overviews.token_labels(session, sorted({a.token_id for a in found}))
    return {"agents": found, "token_labels": labels}


async def _pool_page(
    request: Request,
    app: Outpost,
    user: WebUser,
    org: str,
    pool_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    description: str = "",
) -> Response:
    async with app.db.read() as session:
        pool = await access.pool(session, user.principal, org, pool_id)
        can_manage = await access.may(session, user.principal, org, Action.MANAGE_AGENT_TOKENS)
        agents = await _agents_context(session, pool.id)
        linked = await pools.linked_workspaces(session, pool.id)
        tokens = await pools.list_tokens(session, pool.id) if can_manage else []
    created_id = request.query_params.get("created", "")
    created = next((t for t in tokens if t.id == created_id), None)
    secret = take_secret(request, app, user, created.id) if created is not None else None
    response = render.page(
        request,
        "pools/show.html",
        context(
            request,
            user,
            title=f"Agent pool {pool.name}",
            org=org,
            area="pools",
            pool=pool,
            can_manage=can_manage,
            linked=linked,
            tokens=tokens,
            created=created,
            secret=secret,
            address=server_address(request, app),
            error=error,
            description=description,
            **agents,
        ),
        status=status,
    )
    # The secret is on this one response only: the cookie that carried it is cleared here.
    forget_secret(response, request, app)
    return response


@router.get("/{org}/pools/{pool_id}")
async def show_pool(
    org: str, pool_id: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    return await _pool_page(request, app, user, org, pool_id)


@router.get("/{org}/pools/{pool_id}/agents/live")
async def live_agents(
    org: str, pool_id: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        pool: AgentPool = await access.pool(session, user.principal, org, pool_id)
    last = ""

    async def poll() -> tuple[list[str], bool]:
        nonlocal last
        async with app.db.read() as session:
            agents = await _agents_context(session, pool.id)
        html = render.fragment("pools/_agents.html", {"pool": pool, **agents})
        if html == last:
            return [], False
        last = html
        return [live.event("agents", html)], False

    return live.stream(request, app, poll)


@router.post("/{org}/pools/{pool_id}/tokens")
async def create_token(
    org: str, pool_id: str, request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    form = await request.form()
    description = field(form, "description")
    try:
        async with app.db.write() as session:
            pool = await access.pool(session, user.principal, org, pool_id, Action.MANAGE_AGENT_TOKENS)
            token, secret = await pools.create_token(session, pool.id, description, user.principal.user_id)
    except OutpostError as exc:
        return await _pool_page(
            request, app, user, org, pool_id, error=exc.detail, status=exc.status, description=description
        )
    response = render.redirect(pool_url(org, pool_id, created=token.id) + "#new-token")
    remember_secret(response, request, app, user, token.id, secret)
    return response


@router.post("/{org}/pools/{pool_id}/tokens/{token_id}/revoke")
async def revoke_token(
    org: str,
    pool_id: str,
    token_id: str,
    request: Request,
    user: WebUser = Depends(signed_in),
    app: Outpost = Depends(outpost),
) -> Response:
    form = await request.form()
    typed = field(form, "confirm")
    try:
        async with app.db.write() as session:
            pool = await access.pool(session, user.principal, org, pool_id, Action.MANAGE_AGENT_TOKENS)
            token = await pools.get_token(session, token_id)
            if token.pool_id != pool.id:
                raise Unprocessable(f"Token {token_id!r} does not belong to pool {pool.name}.")
            if typed != token.description.strip():
                raise Unprocessable(
                    f"To revoke the token, type its description exactly: {token.description}",
                    title="confirmation does not match",
                )
            await revocations.revoke_agent_token(session, token)
    except OutpostError as exc:
        return await _pool_page(request, app, user, org, pool_id, error=exc.detail, status=exc.status)
    return render.redirect(pool_url(org, pool_id, done="token-revoked"))
