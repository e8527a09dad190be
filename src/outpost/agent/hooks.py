"""Operator hooks around terraform: `<data-dir>/hooks/terraform-{pre-plan,post-plan,pre-apply,post-apply}`.

Pre hooks run before `terraform init`; post hooks after the operation, whether it succeeded or not. A
hook runs like terraform does (the job's Process: its own process group behind the reaper, so a timeout
or a cancel kills it whole, children included), in the configuration's working directory, with the
job's clean environment plus:

    OUTPOST_RUN_ID  OUTPOST_WORKSPACE_ID  OUTPOST_WORKSPACE_NAME  OUTPOST_ORGANIZATION_NAME
    OUTPOST_RUN_PHASE (plan or apply)  OUTPOST_HOOK (e.g. pre-plan)  OUTPOST_HOOK_ENV (a file, see below)

Its output goes into the run log. A non-zero exit, or running past its timeout (60 s by default, at most
10 minutes, settable per hook), fails the run. `KEY=value` lines the hook writes to the file named by
OUTPOST_HOOK_ENV are exported to the terraform commands that follow it in the job (for a pre hook: init
and the plan or apply); their names are logged, never their values.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outpost.agent.logstream import LogStream
from outpost.agent.process import Process

HOOKS = ("pre-plan", "post-plan", "pre-apply", "post-apply")
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 600.0
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_timeouts(values: Iterable[str]) -> dict[str, float]:
    """`--hook-timeout` values: `SECONDS` for every hook, `HOOK=SECONDS` for one ("" keys the default)."""
    timeouts: dict[str, float] = {}
    for value in values:
        name, _, seconds = value.rpartition("=")
        if name and name not in HOOKS:
            raise ValueError(f"{name!r} is not a hook: use one of {', '.join(HOOKS)}.")
        try:
            number = float(seconds)
        except ValueError:
            raise ValueError(f"{value!r} is not SECONDS or HOOK=SECONDS (for example 120 or pre-apply=300).") from None
        if not 0 < number <= MAX_TIMEOUT:
            raise ValueError(f"A hook timeout is more than 0 and at most {MAX_TIMEOUT:g} seconds, not {seconds}.")
        timeouts[name] = number
    return timeouts


def timeout_for(timeouts: Mapping[str, float], hook: str) -> float:
    return timeouts.get(hook, timeouts.get("", DEFAULT_TIMEOUT))


@dataclass
class HookResult:
    ran: bool = False
    error: str | None = None  # why the run fails; None when the hook passed (or there is none)
    exports: dict[str, str] = field(default_factory=dict)


class Hooks:
    def __init__(
        self,
        directory: Path,
        timeouts: Mapping[str, float],
        process: Process,
        logs: LogStream,
        jobdir: Path,
        run: Mapping[str, Any],
        workspace: Mapping[str, Any],
    ) -> None:
        self.directory = directory
        self.timeouts = timeouts
        self.process = process
        self.logs = logs
        self.jobdir = jobdir
        self.context = {
            "OUTPOST_RUN_ID": str(run["id"]),
            "OUTPOST_WORKSPACE_ID": str(workspace["id"]),
            "OUTPOST_WORKSPACE_NAME": str(workspace["name"]),
            "OUTPOST_ORGANIZATION_NAME": str(workspace["organization"]),
        }

    async def run(self, hook: str, env: Mapping[str, str], cwd: Path) -> HookResult:
        path = self.directory / f"terraform-{hook}"
        if not path.exists():
            return HookResult()
        name = path.name
        if not path.is_file() or not os.access(path, os.X_OK):
            return self._fail(f"The {name} hook at {path} is not an executable file: chmod +x it, or remove it.")
        exports_file = self.jobdir / f"{name}.env"
        exports_file.write_bytes(b"")
        exports_file.chmod(0o600)
        hook_env = {
            **env,
            **self.context,
            "OUTPOST_RUN_PHASE": hook.split("-", 1)[1],
            "OUTPOST_HOOK": hook,
            "OUTPOST_HOOK_ENV": str(exports_file),
        }
        limit = timeout_for(self.timeouts, hook)
        self.logs.line(f"Running the {name} hook")
        try:
            async with asyncio.timeout(limit):
                # The operator's own code: outside the run's sandbox, which hides the agent's data directory.
                code = await self.process.run(
                    [str(path)], cwd=cwd, env=hook_env, output=self.logs.write, sandboxed=False
                )
        except TimeoutError:
            return self._fail(f"The {name} hook did not finish within {limit:g} s and was stopped.")
        if code != 0:
            return self._fail(f"The {name} hook exited with status {code}.")
        try:
            exports = parse_exports(exports_file.read_text(errors="replace"))
        except ValueError as exc:
            return self._fail(f"The {name} hook wrote bad exports to OUTPOST_HOOK_ENV: {exc}")
        if exports:
            self.logs.line(f"The {name} hook exported {', '.join(sorted(exports))}")
        self.logs.line(f"The {name} hook finished")
        return HookResult(ran=True, exports=exports)

    def _fail(self, message: str) -> HookResult:
        self.logs.line(f"Error: {message}")
        return HookResult(ran=True, error=message)


def parse_exports(text: str) -> dict[str, str]:
    """`KEY=value` per line; blank lines and `#` comments are skipped; OUTPOST_* stays the agent's."""
    exports: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.match(key):
            raise ValueError(f"line {number} is not KEY=value.")
        if key.startswith("OUTPOST_"):
            raise ValueError(f"line {number} sets {key}: OUTPOST_* variables are the agent's own.")
        exports[key] = value
    return exports
