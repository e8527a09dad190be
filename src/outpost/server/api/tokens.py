"""The caller's account and API tokens, and `/authentication-tokens/{id}` for user and agent tokens alike.

Terraform Cloud serves both kinds under one path; ids are random (`at-...`) so one lookup finds the kind.
A user sees and revokes only their own user tokens; agent tokens are the owners team's. The secret is in
the answer to the creation only; afterwards a token shows its description and dates, never its value.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from outpost.domain.permissions import Action
from outpost.errors import NotFound, Unprocessable
from outpost.server import jsonapi
from outpost.server.api import bodies, shapes
from outpost.server.api.agent_pools import revoke_agent_token, show_agent_token
from outpost.server.auth import Caller, guard
from outpost.server.context import Outpost, outpost
from outpost.store import users

router = APIRouter(tags=["authentication-tokens"])


@router.get("/account/details")
async def account(caller: Caller = guard(Action.READ_ACCOUNT), app: Outpost = Depends(outpost)) -> Response:
    async with app.db.read() as session:
        user = await users.get_user(session, caller.user_id)
    assert user is not None
    return jsonapi.document(shapes.user(user))


def _own(caller: Caller, user_id: str) -> None:
    # Another user's tokens do not exist as far as the caller can tell.
    if user_id != caller.user_id:
        raise NotFound(f"User {user_id!r} was not found.")


@router.get("/users/{user_id}/authentication-tokens")
async def list_user_tokens(
    user_id: str, caller: Caller = guard(Action.MANAGE_OWN_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    _own(caller, user_id)
    async with app.db.read() as session:
        tokens = await users.list_user_tokens(session, user_id)
    return jsonapi.document([shapes.user_token(t) for t in tokens])


@router.post(
    "/users/{user_id}/authentication-tokens",
    status_code=201,
    openapi_extra=bodies.body("authentication-tokens", required=False),
)
async def create_user_token(
    user_id: str, request: Request, caller: Caller = guard(Action.MANAGE_OWN_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    _own(caller, user_id)
    body = await jsonapi.read_body(request)
    jsonapi.expect_type(body, "authentication-tokens")
    description = jsonapi.string(jsonapi.attributes_of(body, required=False), "description") or ""
    if len(description) > 200:
        raise Unprocessable("A token's description is at most 200 characters.", title="invalid description")
    async with app.db.write() as session:
        token, secret = await users.create_user_token(session, user_id, description)
    return jsonapi.document(shapes.user_token(token, secret), status=201)


@router.get("/authentication-tokens/{token_id}")
async def show_token(
    token_id: str, caller: Caller = guard(Action.MANAGE_AGENT_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.read() as session:
        token = await users.get_user_token(session, token_id)
        if token is not None:
            _own_token(caller, token.user_id, token_id)
            return jsonapi.document(shapes.user_token(token))
        return jsonapi.document(await show_agent_token(session, caller, token_id))


@router.delete("/authentication-tokens/{token_id}", status_code=204)
async def revoke_token(
    token_id: str, caller: Caller = guard(Action.MANAGE_AGENT_TOKENS), app: Outpost = Depends(outpost)
) -> Response:
    async with app.db.write() as session:
        token = await users.get_user_token(session, token_id)
        if token is not None:
            _own_token(caller, token.user_id, token_id)
            await users.revoke_user_token(session, token)
        else:
            await revoke_agent_token(session, caller, token_id)
    return Response(status_code=204)


def _own_token(caller: Caller, owner_id: str, token_id: str) -> None:
    if owner_id != caller.user_id:
        raise NotFound(f"Authentication token {token_id!r} was not found.")
