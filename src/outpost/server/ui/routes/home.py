"""The start page: the user's organizations."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.server.context import Outpost, outpost
from outpost.server.ui import render
from outpost.server.ui.routes.common import context, csrf_checked, signed_in
from outpost.server.ui.sessions import WebUser
from outpost.store import users

router = APIRouter(dependencies=[Depends(csrf_checked)])


@router.get("/")
async def organizations(
    request: Request, user: WebUser = Depends(signed_in), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        orgs = await users.organizations_of(session, user.principal.user_id)
    if len(orgs) == 1:
        return render.redirect(f"/app/{orgs[0].id}/workspaces")
    return render.page(request, "organizations.html", context(request, user, title="Organizations", orgs=orgs))


@router.get("/{org}")
async def organization(org: str) -> Response:
    return render.redirect(f"/app/{quote(org, safe='')}/workspaces")
