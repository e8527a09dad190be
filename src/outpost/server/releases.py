"""A Terraform releases mirror for agents that reach nothing but the control plane.

`outpost server --releases-dir DIR` serves DIR at /releases/ in the vendor's layout
(`terraform/{v}/terraform_{v}_linux_amd64.zip`, `..._SHA256SUMS`, `..._SHA256SUMS.sig`); agents started
with `--releases-url https://<server>/releases` download from it and verify exactly as from the vendor,
so the mirror need not be trusted, only reachable. It answers agents (their session credential) and
users (an API token), nobody anonymous.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from outpost.errors import NotFound, Unauthorized
from outpost.ids import TokenKind, secret_kind
from outpost.server.auth import bearer
from outpost.server.context import Outpost, outpost
from outpost.store import agents as agents_store
from outpost.store import users

router = APIRouter(tags=["operations"])


async def _authenticate(app: Outpost, request: Request) -> None:
    token = bearer(request)
    kind = secret_kind(token) if token else None
    if token is None or kind not in (TokenKind.AGENT_SESSION, TokenKind.USER):
        raise Unauthorized("Send an agent session credential or a user API token as 'Authorization: Bearer <token>'.")
    async with app.db.read() as session:
        if kind == TokenKind.AGENT_SESSION:
            await agents_store.authenticate_session(session, token)
        else:
            await users.authenticate(session, token)


@router.get("/releases/{path:path}", include_in_schema=False)
async def release_file(path: str, request: Request, app: Outpost = Depends(outpost)) -> Response:
    await _authenticate(app, request)
    root = app.config.releases_dir
    if root is None:
        raise NotFound("This server serves no releases mirror: start it with --releases-dir.")
    base = root.resolve()
    target = (base / path).resolve()
    # Resolved first, so neither `..` nor a symbolic link leads out of the mirror.
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"The releases mirror has no {path!r}.")
    return FileResponse(target, media_type=_media_type(target))


def _media_type(path: Path) -> str:
    return "application/zip" if path.suffix == ".zip" else "application/octet-stream"
