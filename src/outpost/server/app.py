"""Assembles the ASGI application: routers, error handling, and the background duties' lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from outpost import __version__
from outpost.config import ServerConfig
from outpost.server import errors, limits, metrics, releases, ui
from outpost.server.agent_api import plain as agent_plain
from outpost.server.agent_api import routes as agent_routes
from outpost.server.api import (
    agent_pools,
    configuration_versions,
    discovery,
    organizations,
    plans,
    runs,
    state_versions,
    teams,
    tokens,
    workspaces,
)
from outpost.server.context import Outpost, encryption_keys
from outpost.server.dispatch import Dispatcher
from outpost.server.monitor import Monitor
from outpost.server.pings import PingBuffer
from outpost.store import migrate
from outpost.store.db import Database

API = "/api/v2"


def create_app(config: ServerConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        keys = encryption_keys(config)
        if config.migrate:
            await asyncio.to_thread(migrate.upgrade, config.db_url, encryption_keys=keys)
        db = Database(config.db_url, pool_size=config.database_pool_size)
        state = Outpost(config=config, db=db, dispatcher=Dispatcher(), pings=PingBuffer(db))
        state.attach()
        await state.load_secret()
        await state.load_encryption(keys)
        app.state.outpost = state
        tasks = [
            asyncio.create_task(Monitor(state).run()),
            asyncio.create_task(state.pings.run(min(1.0, config.heartbeat_interval / 2))),
            asyncio.create_task(db.run_checkpoints()),
        ]
        if not db.is_sqlite:
            listener = state.listener()
            tasks.append(asyncio.create_task(listener.run()))
            # Serve once other replicas' wake-ups reach us; if PostgreSQL is slow to accept the LISTEN
            # connection, serve anyway: polling picks work up meanwhile and the listener keeps trying.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.listening.wait(), 10)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):  # the last second of idle heartbeats, if the database allows
                await state.pings.flush()
            await db.dispose()

    app = FastAPI(
        title="Outpost",
        version=__version__,
        description="Terraform Cloud API v2 shapes for runs, workspaces, state and agent pools.",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(discovery.router)
    # FastAPI tries routes one by one, twice per request (to match, then to handle): the API's most
    # requested ones first (clients poll runs and read logs while a run goes on). No two modules' paths
    # overlap, so their order changes nothing else.
    for module in (runs, plans, workspaces, state_versions, configuration_versions, agent_pools, organizations):
        app.include_router(module.router, prefix=API)
    for module in (teams, tokens):
        app.include_router(module.router, prefix=API)
    limits.install(app)
    app.include_router(metrics.router)
    app.include_router(releases.router)
    app.include_router(ui.root)
    app.mount("/app", ui.create_ui(app.state))
    # The agent protocol's FastAPI declarations give the OpenAPI document; its requests never get this far.
    app.include_router(agent_routes.router)
    # Routes are matched in order: the agent protocol, which carries most requests (every agent's polls
    # and heartbeats), comes first, served by plain Starlette routes (see agent_api.plain).
    app.router.routes.insert(0, agent_plain.mount(agent_routes.router))
    return app
