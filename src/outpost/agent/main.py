"""The agent's lifecycle: register, work, deregister, and every decision to exit, made here.

Signals escalate: the first SIGINT/SIGTERM stops taking jobs and lets running ones finish; the second
cancels running jobs (SIGINT to terraform, the group killed after the grace period); the third exits at
once, killing terraform's process groups first so that nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import replace
from pathlib import Path

from outpost import logcontext
from outpost.agent import network
from outpost.agent.client import Client
from outpost.agent.exitcodes import ExitCode
from outpost.agent.metrics import MetricsServer
from outpost.agent.sandbox import Sandbox
from outpost.agent.worker import Worker, _Stop
from outpost.config import AgentConfig
from outpost.errors import AgentFatal, ConfigError, Retryable

log = logging.getLogger("outpost.agent")


class Agent:
    def __init__(self, config: AgentConfig, *, unix_socket: Path | None = None) -> None:
        self.config = config
        options = None if unix_socket else network.http_options(config, config.address)
        if options and options["proxy"]:
            log.info("reaching %s through the proxy %s", config.address, network.redact(options["proxy"]))
        self.client = Client(config.address, unix_socket=unix_socket, http_options=options)
        self.worker: Worker | None = None
        self.signals = 0
        self.stop_requested = asyncio.Event()
        self.sandbox: Sandbox | None = None

    def _on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.info("%s: finishing running jobs, taking no new ones (again to cancel them)", name)
            self.stop_requested.set()
            if self.worker is not None:
                self.worker.drain()
        elif self.signals == 2:
            log.info("%s: canceling running jobs (again to exit at once)", name)
            if self.worker is not None:
                self.worker.cancel_all()
        else:
            log.info("%s: exiting now", name)
            if self.worker is not None:
                self.worker.kill_all()
            os._exit(ExitCode.FORCED)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self._main()
        finally:
            # Handed over before the loop closes: asyncio closes its wake-up pipe first and removes its
            # handlers after, and a signal in between is written to a closed descriptor ("Exception
            # ignored ... Bad file descriptor", with a traceback, in the log). From here on, a signal
            # while the interpreter winds down means "exit now".
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
                signal.signal(sig, lambda *_: os._exit(ExitCode.FORCED))

    async def _main(self) -> int:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        bundle = network.terraform_ca_bundle(self.config)
        if bundle is not None:  # terraform trusts --ca-cert too (network mirrors, TLS-inspecting proxies)
            self.config = replace(
                self.config, passthrough_env={**self.config.passthrough_env, "SSL_CERT_FILE": str(bundle)}
            )
        # Job directories (and their log spools) are the agent's alone (the sandbox may open this to 0711).
        jobs = self.config.data_dir / "jobs"
        jobs.mkdir(exist_ok=True)
        jobs.chmod(0o700)
        try:
            # After the CA bundle: sandboxed runs are shown the certificates terraform is told to trust.
            self.sandbox = Sandbox(self.config)
            log.info("%s", await asyncio.to_thread(self.sandbox.check))
        except ConfigError as exc:
            log.error("%s", exc.detail)
            await self.client.close()
            return ExitCode.USAGE
        exporter = None
        if self.config.metrics_port is not None:
            exporter = MetricsServer(self.config.metrics_address, self.config.metrics_port)
            exporter.start()
            log.info("metrics on http://%s:%s/metrics", self.config.metrics_address, self.config.metrics_port)
        try:
            return await self._run()
        except AgentFatal as exc:
            log.error("exiting: %s", exc)
            if self.worker is not None:
                self.worker.kill_all()
            return exc.exit_code
        finally:
            await self.client.close()
            if exporter is not None:
                exporter.stop()

    async def _run(self) -> int:
        register = asyncio.create_task(
            self.client.register(self.config.token, self.config.name, self.config.concurrency)
        )
        stop = asyncio.create_task(self.stop_requested.wait())
        await asyncio.wait([register, stop], return_when=asyncio.FIRST_COMPLETED)
        if not register.done():
            register.cancel()
            log.info("stopped before registering")
            return ExitCode.OK
        stop.cancel()
        registration = register.result()
        logcontext.bind(agent_id=registration.agent_id)
        log.info(
            "registered as agent %s (heartbeat every %g s)", registration.agent_id, registration.heartbeat_interval
        )
        self.worker = Worker(self.config, self.client, registration, self.sandbox)
        if self.stop_requested.is_set():
            self.worker.drain()
        try:
            await self.worker.run()
        except BaseExceptionGroup as group:
            _reraise_meaningful(group)
        try:
            await self.client.deregister()
            log.info("deregistered; exiting")
        except (Retryable, AgentFatal) as exc:
            log.warning("could not deregister: %s", exc)
        return ExitCode.OK


def _reraise_meaningful(group: BaseExceptionGroup[BaseException]) -> None:
    """The task group stops on _Stop (a normal end); anything else, a fatal answer first, is re-raised."""
    fatal = group.subgroup(lambda e: isinstance(e, AgentFatal))
    if fatal is not None:
        raise _first(fatal)
    rest = group.subgroup(lambda e: not isinstance(e, _Stop | BaseExceptionGroup))
    if rest is not None:
        raise _first(rest)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def run(config: AgentConfig, *, unix_socket: Path | None = None) -> int:
    return asyncio.run(Agent(config, unix_socket=unix_socket).run())
