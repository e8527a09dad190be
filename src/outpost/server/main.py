"""Runs the server process: uvicorn on the public address (HTTP or HTTPS) and, for the built-in
agent, on a Unix socket in the data directory.

Shutdown order matters: on SIGINT/SIGTERM the built-in agent is stopped first (it deregisters through
the still-running server), then both listeners close, then the lifespan ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from outpost.config import ServerConfig
from outpost.server.app import create_app
from outpost.server.builtin_agent import BuiltinAgent
from outpost.server.context import Outpost

log = logging.getLogger("outpost.server")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve` below, which orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: ServerConfig) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = (config.data_dir / "agent.sock").resolve()
    socket_path.unlink(missing_ok=True)
    app = create_app(config)
    # Idle keep-alive connections are held for 75 s, longer than any client or proxy in front keeps one
    # (httpx 5 s, nginx upstream 60 s): with uvicorn's default of 5 s, a client reusing a connection just
    # as the server closed it got a read error (a 502 through nginx), seen under load in the benchmarks.
    common = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "timeout_graceful_shutdown": 5,
        "timeout_keep_alive": 75,
    }
    listeners = [
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
            **common,  # type: ignore[arg-type]
        )
    ]
    if config.builtin_agent:
        listeners.append(uvicorn.Config(app, uds=str(socket_path), **common))  # type: ignore[arg-type]
    servers = [_Server(c) for c in listeners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        results = await _serve(app, config, servers, stop, socket_path if config.builtin_agent else None)
    finally:
        # Removed before the loop closes: asyncio closes its wake-up pipe first and removes its handlers
        # after, and a signal in between is written to a closed descriptor (a traceback in the log).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    socket_path.unlink(missing_ok=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    if any(not s.started for s in servers):
        raise SystemExit(f"Outpost server could not listen on {config.host}:{config.port} (see the error above).")


async def _serve(
    app: FastAPI, config: ServerConfig, servers: list[_Server], stop: asyncio.Event, socket: Path | None
) -> list[BaseException | None]:
    """The listeners, the built-in agent (on `socket`) and the lifespan, until `stop` is set."""
    async with app.router.lifespan_context(app):
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        failed = [t for t in tasks if t.done()]
        builtin = None
        if not failed:
            log.info("Outpost server listening on %s://%s:%s", config.scheme, config.host, config.port)
            print(f"Outpost server listening on {config.scheme}://{config.host}:{config.port}", flush=True)
            if socket is not None:
                state: Outpost = app.state.outpost
                builtin = BuiltinAgent(config, state.db, socket)
                await builtin.start()
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if builtin is not None:
            await builtin.stop()
        if hasattr(app.state, "outpost"):
            app.state.outpost.dispatcher.close()
        for server in servers:
            server.should_exit = True
        return await asyncio.gather(*tasks, return_exceptions=True)


def run(config: ServerConfig) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
