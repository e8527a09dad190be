"""Per-run limits on memory, CPU and processes.

Where the machine delegates cgroup v2 controllers to the agent (for example a systemd unit with
`Delegate=yes`), every run gets a cgroup of its own with `memory.max` (swap off), `pids.max` and `cpu.max`:
the kernel enforces them for all the run's processes together, and `memory.events` tells whether the
kernel killed something for memory.

Elsewhere (cgroup v1 or a hybrid hierarchy, controllers not delegated), the fallback is:
- memory: a watchdog in the agent sums the resident memory of the run's processes (all descendants of
  the run's reaper, which is a child subreaper so that daemonized processes stay below it) a few times a
  second and kills the run when the sum is over the limit; `RLIMIT_DATA` at twice the limit backs it up
  per process against an allocation too fast for the watchdog;
- processes: `RLIMIT_NPROC`, which counts per uid, so it is a per-run limit only when the run has a uid
  of its own (the sandbox as root gives it one);
- CPU: no rate limit without cgroups; runs get a lower priority (nice 10) instead.
`describe()` says which applies, and the agent logs it at startup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("outpost.agent.limits")

PAGE = os.sysconf("SC_PAGE_SIZE")
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
WATCH_INTERVAL = 0.2


@dataclass(frozen=True)
class Limits:
    memory_mb: int | None = None
    cpus: float | None = None
    pids: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.memory_mb, self.cpus, self.pids))

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory_mb is None else self.memory_mb * 1024 * 1024


# --- cgroup v2 -----------------------------------------------------------------------------------


def _cgroup2_mount(mounts: str) -> Path | None:
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


def _own_cgroup(proc_self_cgroup: str) -> str | None:
    for line in proc_self_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


@dataclass
class CgroupV2:
    """The agent's delegated cgroup v2 subtree: runs are made as children of `root`."""

    root: Path

    @classmethod
    def detect(cls, proc: Path = Path("/proc")) -> tuple[CgroupV2 | None, str]:
        """The usable subtree, or None and why not (said in the agent's startup log and docs)."""
        try:
            mount = _cgroup2_mount((proc / "self" / "mounts").read_text())
            own = _own_cgroup((proc / "self" / "cgroup").read_text())
        except OSError as exc:
            return None, f"cannot read cgroup information ({exc.strerror})"
        if mount is None or own is None:
            return None, "no cgroup v2 hierarchy is mounted"
        root = mount / own.lstrip("/")
        try:
            available = (root / "cgroup.controllers").read_text().split()
        except OSError as exc:
            return None, f"cannot read {root / 'cgroup.controllers'} ({exc.strerror})"
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            return None, (
                f"the cgroup v2 controllers {', '.join(missing)} are not available in {root} (a cgroup v1 or "
                "hybrid machine, or controllers not delegated to the agent)"
            )
        if not os.access(root, os.W_OK):
            return None, f"{root} is not writable by the agent"
        return cls(root), f"cgroup v2 under {root}"

    def prepare(self) -> None:
        """Enable the controllers for children. cgroup v2 allows that only in a cgroup with no processes of
        its own, so the agent first moves itself into a leaf `agent` child (what systemd's Delegate expects)."""
        enabled = (self.root / "cgroup.subtree_control").read_text().split()
        if all(c in enabled for c in CONTROLLERS):
            return
        leaf = self.root / "agent"
        leaf.mkdir(exist_ok=True)
        for pid in (self.root / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # a process that exited meanwhile
                (leaf / "cgroup.procs").write_text(pid)
        (self.root / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))

    def create(self, name: str, limits: Limits) -> Path:
        group = self.root / name
        group.mkdir()
        if limits.memory_bytes is not None:
            (group / "memory.max").write_text(str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # no swap accounting on this kernel
                (group / "memory.swap.max").write_text("0")
        if limits.pids is not None:
            (group / "pids.max").write_text(str(limits.pids))
        if limits.cpus is not None:
            (group / "cpu.max").write_text(f"{max(1000, int(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        return group


def oom_kills(group: Path) -> int:
    try:
        for line in (group / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def remove_cgroup(group: Path) -> None:
    # A cgroup is removed with rmdir once empty; its interface files are not real files.
    with contextlib.suppress(OSError):
        group.rmdir()
    if group.exists():
        log.warning("could not remove cgroup %s (processes left in it?)", group)
        with contextlib.suppress(OSError):
            shutil.rmtree(group, ignore_errors=True)


# --- the fallback --------------------------------------------------------------------------------


def rlimit_options(limits: Limits, *, own_uid: bool) -> list[str]:
    """Reaper options that set the fallback's rlimits and priority in the child before exec."""
    options: list[str] = []
    if limits.memory_bytes is not None:
        options += ["--rlimit", f"DATA={2 * limits.memory_bytes}"]
    if limits.pids is not None and own_uid:
        options += ["--rlimit", f"NPROC={limits.pids}"]
    if limits.cpus is not None:
        options += ["--nice", "10"]
    return options


def _children_map(proc: Path) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = (proc / entry.name / "stat").read_text()
        except OSError:
            continue
        # The command name (2nd field) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int, proc: Path = Path("/proc")) -> list[int]:
    children = _children_map(proc)
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def resident_bytes(pids: list[int], proc: Path = Path("/proc")) -> int:
    total = 0
    for pid in pids:
        try:
            total += int((proc / str(pid) / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total
