"""The web UI under /app: server-rendered pages (Jinja2) with a little JavaScript for live updates.

It is a sub-application of the server, so that its errors are HTML pages rather than JSON:API
documents, and it shares the server's state (database, settings, installation key).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException

from outpost.errors import OutpostError
from outpost.server.ui import render
from outpost.server.ui.routes import auth, home, pools, runs, workspaces
from outpost.server.ui.sessions import SignInRequired, current_user

log = logging.getLogger("outpost.server.ui")

root = APIRouter(include_in_schema=False)
ROUTERS = (auth.router, home.router, pools.router, workspaces.router, runs.router)


@root.get("/")
async def _root() -> Response:
    return render.redirect("/app/")


def create_ui(state: State) -> FastAPI:
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui.state = state  # the server's state: `app.state.outpost` is set in its lifespan
    ui.mount("/-/static", StaticFiles(directory=str(render.HERE / "static")), name="static")
    for router in ROUTERS:
        ui.include_router(router)
    ui.add_middleware(render.SecurityHeaders)
    _install_errors(ui)
    return ui


def _install_errors(ui: FastAPI) -> None:
    async def error_page(request: Request, status: int, title: str, detail: str) -> Response:
        app = request.app.state.outpost
        user = await current_user(request, app) if status != 500 else None
        context = {"title": title, "status": status, "detail": detail, "user": user}
        if user is not None:
            context["csrf"] = user.csrf
        return render.page(request, "error.html", context, status=status)

    @ui.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
            return render.redirect(f"/app/sign-in?next={request.url.path}")
        return await error_page(request, 401, "Signed out", "Your session has ended. Sign in again to continue.")

    @ui.exception_handler(OutpostError)
    async def _outpost(request: Request, exc: OutpostError) -> Response:
        return await error_page(request, exc.status, exc.title, exc.detail)

    @ui.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return await error_page(request, 404, "Page not found", "There is no page at this address. Use the menu.")
        return await error_page(request, exc.status_code, "Request not handled", str(exc.detail))

    @ui.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return await error_page(
            request, 500, "Something went wrong", "The server failed to show this page; its log says why. Try again."
        )
