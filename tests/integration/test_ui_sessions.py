"""Web sign-in, sessions and CSRF over real HTTP against a running server (no browser needed)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from outpost.admin import bootstrap, set_password
from outpost.api_client import OutpostAPI
from outpost.ids import hash_secret
from outpost.server.ui import ROUTERS
from outpost.store.db import Database
from outpost.store.tables import UserToken
from outpost.timeutil import utcnow
from tests.compat.conftest import start_tls_server
from tests.support.processes import Server
from tests.support.webui import UI

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def email_of(org: tuple[str, str]) -> str:
    return f"owner-{org[0]}@example.com"


@pytest.fixture
def ui(server: Server) -> object:
    client = UI(server.url)
    yield client
    client.close()


@pytest.fixture
def with_password(server: Server, org: tuple[str, str]) -> str:
    asyncio.run(set_password(server.db_url, email_of(org), PASSWORD))
    return email_of(org)


def test_password_sign_in_sets_a_protected_session_cookie(
    ui: UI, server: Server, org: tuple[str, str], with_password: str
) -> None:
    assert ui.http.get(f"/app/{org[0]}/pools").headers["location"] == f"/app/sign-in?next=/app/{org[0]}/pools"
    signed = ui.sign_in(with_password, PASSWORD, next_=f"/app/{org[0]}/pools")
    assert signed.status_code == 303 and signed.headers["location"] == f"/app/{org[0]}/pools"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("outpost_session="))
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes and "secure" not in attributes  # plain HTTP here
    assert "Path=/app" in cookie and "SameSite=lax" in cookie
    page = ui.http.get(f"/app/{org[0]}/pools")
    assert page.status_code == 200 and "No agent pools yet." in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # The API never takes the cookie: it wants a bearer token, so it needs no CSRF defence.
    session_cookie = ui.http.cookies["outpost_session"]
    api = httpx.get(
        f"{server.url}/api/v2/organizations/{org[0]}/workspaces", cookies={"outpost_session": session_cookie}
    )
    assert api.status_code == 401


def test_wrong_password_and_unknown_email_get_the_same_answer(ui: UI, with_password: str) -> None:
    wrong = ui.sign_in(with_password, "not the password")
    unknown = ui.sign_in("nobody-at-all@example.com", PASSWORD)
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "The email or password is not right" in answer.text
        assert "outpost_session" not in answer.headers.get("set-cookie", "")
    assert "outpost_session" not in ui.http.cookies


def test_failed_sign_ins_are_limited_per_email_and_address(ui: UI, with_password: str, org: tuple[str, str]) -> None:
    for _ in range(5):
        assert ui.sign_in(with_password, "wrong password").status_code == 401
    refused = ui.sign_in(with_password, PASSWORD)  # even the right password waits now
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text and int(refused.headers["retry-after"]) > 0
    assert "outpost_session" not in ui.http.cookies
    # Other accounts from the same address are not locked out by this one.
    other = f"other-{org[0]}@example.com"
    assert ui.sign_in(other, "wrong password").status_code == 401


def test_every_state_changing_route_demands_the_csrf_token(
    ui: UI, server: Server, org: tuple[str, str], with_password: str, api: OutpostAPI
) -> None:
    assert ui.sign_in(with_password, PASSWORD).status_code == 303
    pool = api.create_pool(org[0], "kept")
    token_id, _ = api.create_agent_token(pool["id"], "kept token")
    values = {"org": org[0], "pool_id": pool["id"], "token_id": token_id, "name": "none", "run_id": "run-x"}
    values |= {"var_id": "var-x", "action": "apply"}
    posts = [
        route.path.format(**values)
        for router in ROUTERS
        for route in router.routes
        if "POST" in getattr(route, "methods", ())
    ]
    assert len(posts) >= 10, posts
    good = ui.csrf(f"/app/{org[0]}/pools")
    for path in posts:
        url = f"/app{path}"
        for data, headers in (
            ({"name": "evil", "confirm": "kept token"}, {}),
            ({"csrf_token": "0" * 64, "name": "evil", "confirm": "kept token"}, {}),
            ({"csrf_token": good, "name": "evil", "confirm": "kept token"}, {"origin": "https://evil.example"}),
        ):
            answer = ui.http.post(url, data=data, headers=headers)
            assert answer.status_code == 403, (url, data, headers, answer.status_code)
    # Nothing changed: no pool named evil, the token not revoked, still signed in.
    assert [p["attributes"]["name"] for p in api.request("GET", f"/organizations/{org[0]}/agent-pools")["data"]] == [
        "kept"
    ]
    assert api.request("GET", f"/authentication-tokens/{token_id}")["data"]["id"] == token_id
    assert ui.http.get(f"/app/{org[0]}/pools").status_code == 200
    # With the token (and our own origin) the same form works.
    created = ui.http.post(
        f"/app/{org[0]}/pools", data={"csrf_token": good, "name": "good"}, headers={"origin": server.url}
    )
    assert created.status_code == 303


def test_sign_out_ends_the_session_on_the_server(
    ui: UI, server: Server, org: tuple[str, str], with_password: str
) -> None:
    ui.sign_in(with_password, PASSWORD)
    stolen = ui.http.cookies["outpost_session"]
    out = ui.post("/app/sign-out", {}, page=f"/app/{org[0]}/pools")
    assert out.status_code == 303 and out.headers["location"] == "/app/sign-in?done=signed-out"
    replay = httpx.get(f"{server.url}/app/{org[0]}/pools", cookies={"outpost_session": stolen})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/app/sign-in")


def test_a_new_password_ends_password_sessions(
    ui: UI, server: Server, org: tuple[str, str], with_password: str
) -> None:
    ui.sign_in(with_password, PASSWORD)
    assert ui.http.get(f"/app/{org[0]}/pools").status_code == 200
    asyncio.run(set_password(server.db_url, with_password, "an entirely new password"))
    assert ui.http.get(f"/app/{org[0]}/pools").status_code == 303
    assert ui.sign_in(with_password, PASSWORD).status_code == 401
    assert ui.sign_in(with_password, "an entirely new password").status_code == 303


def _revoke_user_token(db_url: str, secret: str) -> None:
    async def run() -> None:
        db = Database(db_url)
        try:
            async with db.write() as session:
                await session.execute(
                    update(UserToken).where(UserToken.token_hash == hash_secret(secret)).values(revoked_at=utcnow())
                )
        finally:
            await db.dispose()

    asyncio.run(run())


def test_an_api_token_session_ends_when_the_token_is_revoked(ui: UI, server: Server, org: tuple[str, str]) -> None:
    assert ui.sign_in(token="opa_not-a-user-token").status_code == 401
    assert ui.sign_in(token=org[1]).status_code == 303
    assert ui.http.get(f"/app/{org[0]}/workspaces").status_code == 200
    _revoke_user_token(server.db_url, org[1])
    assert ui.http.get(f"/app/{org[0]}/workspaces").status_code == 303
    assert ui.sign_in(token=org[1]).status_code == 401


def test_a_new_token_secret_is_shown_once_and_only_to_its_session(
    ui: UI, server: Server, org: tuple[str, str], with_password: str, api: OutpostAPI
) -> None:
    pool = api.create_pool(org[0], "reveal")
    page = f"/app/{org[0]}/pools/{pool['id']}"
    ui.sign_in(with_password, PASSWORD)
    created = ui.post(f"{page}/tokens", {"description": "once"}, page=page)
    assert created.status_code == 303
    reveal = ui.http.cookies["outpost_reveal"]
    target = created.headers["location"].split("#")[0]
    # Another signed-in session presenting the same reveal cookie sees nothing.
    other = UI(server.url)
    try:
        other.sign_in(with_password, PASSWORD)
        other.http.cookies.set("outpost_reveal", reveal, path="/app")
        assert "opa_" not in other.http.get(target).text
    finally:
        other.close()
    first = ui.http.get(target)
    secret = re.search(r'id="token-secret" readonly value="(opa_[^"]+)"', first.text)
    assert secret, first.text[:2000]
    assert "outpost_reveal" not in ui.http.cookies  # cleared by the page that showed it
    second = ui.http.get(target)
    assert secret[1] not in second.text and "shown once" in second.text
    # The secret works: it is the pool's token.
    register = httpx.post(
        f"{server.url}/api/agent/v1/register",
        json={"name": "probe", "capacity": 1},
        headers={"Authorization": f"Bearer {secret[1]}"},
    )
    assert register.status_code in (200, 201), register.text


def test_other_organizations_are_not_found(ui: UI, org: tuple[str, str], with_password: str, server: Server) -> None:
    stranger = f"{org[0]}-x"
    token = asyncio.run(bootstrap(server.db_url, stranger, f"owner-{stranger}@example.com"))
    theirs = OutpostAPI(server.url, token)
    try:
        pool = theirs.create_pool(stranger, "secret-pool")
    finally:
        theirs.close()
    ui.sign_in(with_password, PASSWORD)
    for path in (f"/app/{stranger}/pools", f"/app/{stranger}/workspaces", f"/app/{org[0]}/pools/{pool['id']}"):
        answer = ui.http.get(path)
        assert answer.status_code == 404, path
        assert "secret-pool" not in answer.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/api/v2/ping", "/app/\\evil"])
def test_sign_in_only_returns_to_pages_of_the_ui(ui: UI, org: tuple[str, str], with_password: str, target: str) -> None:
    answer = ui.sign_in(with_password, PASSWORD, next_=httpx.QueryParams({"n": target})["n"])
    assert answer.status_code == 303 and answer.headers["location"] == "/app/"


def test_session_cookie_is_secure_over_https(tmp_path: Path, tools_dir: Path) -> None:
    server = start_tls_server(tmp_path, tools_dir, "--no-builtin-agent")
    try:
        asyncio.run(bootstrap(server.db_url, "tls", "owner@example.com"))
        asyncio.run(set_password(server.db_url, "owner@example.com", PASSWORD))
        client = UI(server.url, verify=server.ssl_context())
        try:
            signed = client.sign_in("owner@example.com", PASSWORD)
            assert signed.status_code == 303
            cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith("outpost_session="))
            assert "Secure" in cookie and "HttpOnly" in cookie
            assert client.http.get("/app/tls/workspaces").status_code == 200
        finally:
            client.close()
    finally:
        server.proc.stop()
