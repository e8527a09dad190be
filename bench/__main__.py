"""`python -m bench`: run the benchmarks, print a table, write JSON (see `./scripts/bench --help`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography.fernet import Fernet

from bench import machine
from bench.cases import capacity, dispatch, logstream, memory, overhead, ramp, throughput
from bench.report import render
from bench.servers import Server, new_org, start_server
from outpost.tools import install_tools

CASES = ("dispatch", "ramp", "throughput", "capacity", "overhead", "logs", "memory")
FULL: dict[str, Any] = {
    "dispatch": {"agent_counts": [1, 100, 1000], "samples": 200},
    "ramp": {"agents": 120, "rounds": 5},
    "throughput": {"jobs": 2000, "agents": 50},
    "capacity": {"sizes": [250, 500, 1000, 2000, 5000, 10000], "window": 30.0, "dispatches": 30},
    "overhead": {"sizes": [10, 200], "rounds": 5},
    "logs": {"megabytes": 50.0},
    "memory": {"settle": 5.0},
}
QUICK: dict[str, Any] = {
    "dispatch": {"agent_counts": [1, 20], "samples": 20},
    "ramp": {"agents": 20, "rounds": 1},
    "throughput": {"jobs": 100, "agents": 10},
    "capacity": {"sizes": [100], "window": 3.0, "dispatches": 5},
    "overhead": {"sizes": [2], "rounds": 1},
    "logs": {"megabytes": 0.5},
    "memory": {"settle": 1.0},
}
SERVER_FLAGS = ("--no-builtin-agent", "--log-level", "warn")


@click.command()
@click.option("--quick", is_flag=True, help="A smoke run with tiny sizes (CI runs this): figures are not meaningful.")
@click.option("--only", multiple=True, type=click.Choice(CASES), help="Run only these cases (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench/results/latest.json"), show_default=True)
@click.option(
    "--postgres-url",
    envvar="OUTPOST_BENCH_DATABASE_URL",
    help="An empty PostgreSQL database the run may create its tables in, for throughput on two replicas.",
)
@click.option("--keep", is_flag=True, help="Keep the work directory (server and agent logs).")
@click.option(
    "--tools-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An existing `outpost tools install` directory (default: laid out afresh in the work directory).",
)
def main(
    quick: bool, only: tuple[str, ...], out: Path, postgres_url: str | None, keep: bool, tools_dir: Path | None
) -> None:
    """Outpost's benchmarks: a table on stdout, the figures and the machine in JSON."""
    sizes = QUICK if quick else FULL
    selected = only or CASES
    work = Path(tempfile.mkdtemp(prefix="outpost-bench-"))
    results: dict[str, Any] = {
        "machine": machine.describe(),
        "mode": "quick" if quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": {},
    }
    tools = tools_dir.resolve() if tools_dir else install_tools(work / "tools").root
    try:
        for case in selected:
            click.echo(f"==> {case}", err=True)
            begin = time.monotonic()
            results["cases"][case] = _run(case, sizes[case], work / case, tools, postgres_url)
            click.echo(f"    {time.monotonic() - begin:.0f} s", err=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            click.echo(f"work directory kept: {work}", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    click.echo(render(results))
    click.echo(f"\nJSON: {out}")
    if any(r.get("error") for r in results["cases"].values()):
        sys.exit(1)


def _with_server(work: Path, body: Callable[[Server, str, str], Any], **server_args: Any) -> Any:
    """A fresh server per case, so one case's leftovers (thousands of agents going unknown) cost the next nothing."""
    server = start_server(work / "server", *SERVER_FLAGS, **server_args)
    try:
        org = "bench"
        return body(server, org, new_org(server, org))
    finally:
        server.stop()


def _run(case: str, args: dict[str, Any], work: Path, tools: Path, postgres_url: str | None) -> Any:
    work.mkdir(parents=True)
    try:
        if case == "dispatch":
            return _with_server(work, lambda s, o, t: asyncio.run(dispatch.run(s.url, o, t, **args)))
        if case == "ramp":
            return _with_server(work, lambda s, o, t: asyncio.run(ramp.run(s.url, o, t, **args)))
        if case == "capacity":
            return _with_server(work, lambda s, o, t: asyncio.run(capacity.run(s.url, s.proc.pid, o, t, **args)))
        if case == "overhead":
            return _with_server(work, lambda s, o, t: overhead.run(s.url, o, t, tools, work, **args))
        if case == "logs":
            return _with_server(work, lambda s, o, t: logstream.run(s.url, o, t, tools, work, **args))
        if case == "memory":
            return _with_server(work, lambda s, o, t: memory.run(s.url, o, t, tools, work, **args))
        if case == "throughput":
            figures = {
                "sqlite_one_process": _with_server(
                    work / "sqlite", lambda s, o, t: asyncio.run(throughput.run([s.url], o, t, **args))
                )
            }
            if postgres_url:
                try:
                    figures["postgresql_two_replicas"] = _replicas(work / "postgresql", postgres_url, args)
                except Exception as exc:  # the one-process figure stands on its own
                    figures["postgresql_two_replicas"] = {"error": f"{type(exc).__name__}: {exc}"}
            return figures
    except Exception as exc:  # one failed case is reported, the others still run
        return {"error": f"{type(exc).__name__}: {exc}"}
    raise AssertionError(case)


def _replicas(work: Path, url: str, args: dict[str, Any]) -> Any:
    key = ("--encryption-key", Fernet.generate_key().decode())  # the replicas' shared key
    first = start_server(work / "a", *SERVER_FLAGS, *key, database_url=url)
    try:
        second = start_server(work / "b", *SERVER_FLAGS, *key, database_url=url)
        try:
            org = f"bench-{int(time.time())}"
            return asyncio.run(throughput.run([first.url, second.url], org, new_org(first, org), **args))
        finally:
            second.stop()
    finally:
        first.stop()


if __name__ == "__main__":
    main()
