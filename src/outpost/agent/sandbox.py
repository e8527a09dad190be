"""How a terraform process is launched: plainly, or in a bubblewrap sandbox of its own run.

With `--sandbox bwrap`, every terraform process of a job (init, plan, show, apply, and so everything
local-exec starts) runs in new user, mount, PID, IPC, UTS and cgroup namespaces. It sees:
- the job's work directory (its configuration, state, plan and home), read-write;
- the terraform binaries and the provider mirror, read-only;
- the system's programs and libraries (/usr), CA certificates, name resolution files, read-only;
- a private /tmp, a minimal /dev and its own /proc.
It does not see the agent's data directory (other jobs, the log spool), the agent's or other runs'
processes (so not their /proc/<pid>/environ, where the agent's token is, and nothing it could signal),
or the rest of the host (/etc/shadow, /root, /home, /var, ...). The network is shared: terraform needs
it to reach the infrastructure it manages.

When the agent runs as root, each concurrent run gets a uid of its own (from `--sandbox-uid-base`, one
lock file per uid so that several agents on one host never share one): its files and processes are
its own even outside the namespaces, and `RLIMIT_NPROC` becomes a per-run process limit. `--run-as root`
keeps uid 0 (inside a user namespace, with bubblewrap's default of no capabilities on the host) for runs
that need it. Limits (memory, CPU, processes) are applied in both modes: see `outpost.agent.limits`.

Signals keep working: the reaper keeps SIGINT ignored for bubblewrap itself (so the graceful cancel, a
SIGINT to the whole process group, does not kill the sandbox before terraform saves its state; terraform
installs its own handler, so it still gets the interrupt), and the PID namespace dies with its first
process, so killing the group ends everything in the sandbox, however it tried to escape the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outpost.agent import limits as lim
from outpost.agent.limits import CgroupV2, Limits
from outpost.config import AgentConfig
from outpost.errors import ConfigError

log = logging.getLogger("outpost.agent.sandbox")

# Read-only system paths every sandbox sees (absent ones are skipped). /etc/alternatives: Debian's
# /usr/bin links (awk, editor, ...) point into it.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
)
UID_SLOTS = 4096
DEFAULT_TMP_BYTES = 1024 * 1024 * 1024
MEMORY_MESSAGE = "Outpost: the run was stopped because its processes used more than the run's memory limit of {mb} MiB."


@dataclass(frozen=True)
class Launch:
    """What the reaper runs: options it applies before exec, and the command (wrapped or not)."""

    argv: list[str]
    env: dict[str, str]
    reaper_options: list[str] = field(default_factory=list)


class Sandbox:
    """The agent's launch policy, set up once at startup; `open()` makes one job's RunSpace."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kind = config.sandbox
        self.limits = Limits(memory_mb=config.memory_limit_mb, cpus=config.cpu_limit, pids=config.pids_limit)
        self.bwrap: str | None = None
        self.cgroup: CgroupV2 | None = None
        self.limits_how = "no limits"
        self.own_uids = self.kind == "bwrap" and config.run_as == "unprivileged" and os.geteuid() == 0
        self.lock_dir = Path("/run/outpost-sandbox") if os.geteuid() == 0 else config.data_dir / "uids"

    def check(self) -> str:
        """Set up and try the sandbox; raise ConfigError, which names the fix, when it cannot work here."""
        if self.limits.any:
            self.cgroup, why = CgroupV2.detect()
            if self.cgroup is not None:
                try:
                    self.cgroup.prepare()
                    self.limits_how = f"limits by {why}"
                except OSError as exc:
                    self.cgroup = None
                    why = f"cgroup v2 controllers could not be enabled ({exc.strerror})"
            if self.cgroup is None:
                self.limits_how = f"limits by rlimits and a memory watchdog: {why}"
        if self.kind == "none":
            return f"runs are not sandboxed; {self.limits_how}"
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise ConfigError(
                "--sandbox bwrap needs bubblewrap, which is not installed: install the Debian package "
                "`bubblewrap` (apt-get install bubblewrap), or start the agent without --sandbox."
            )
        if self.own_uids:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # bubblewrap sets a sandbox up as the run's uid, which must reach the job's directory: it may
            # pass through the agent's directories (o+x), not list them (job directories have random names,
            # and each run's work directory is its own uid's, mode 0700).
            jobs = self.config.data_dir / "jobs"
            jobs.mkdir(parents=True, exist_ok=True)
            jobs.chmod(0o711)
            mode = self.config.data_dir.stat().st_mode
            self.config.data_dir.chmod(mode | stat.S_IXOTH)
        self._trial()
        who = "a uid of their own" if self.own_uids else ("root" if self.config.run_as == "root" else "the agent's uid")
        return f"runs are sandboxed with bubblewrap ({self.bwrap}) as {who}; {self.limits_how}"

    def _trial(self) -> None:
        """Start one sandbox the way runs will (the same binds, the same uid): any problem shows now."""
        uid = self.config.sandbox_uid_base if self.own_uids else None
        jobs = self.config.data_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        trial = Path(tempfile.mkdtemp(prefix="sandbox-trial-", dir=jobs))
        try:
            work = trial / "work"
            work.mkdir()
            if uid is not None:
                trial.chmod(0o711)
                os.chown(work, uid, uid)
            self._trial_run(work, uid)
        finally:
            shutil.rmtree(trial, ignore_errors=True)

    def _trial_run(self, work: Path, uid: int | None) -> None:
        argv = [*self.bwrap_argv(work, work, tmp_bytes=16 * 1024 * 1024), "--", "/bin/true"]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"--sandbox bwrap: bubblewrap could not be started: {exc}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            if "Permission denied" in detail and uid is not None:
                raise ConfigError(
                    f"--sandbox bwrap: the runs' uid ({uid}) cannot reach a directory the sandbox needs ({detail}). "
                    "The agent's data directory, the terraform directory and the provider mirror must be "
                    "reachable by other users: give every directory above them search permission (chmod o+x)."
                )
            raise ConfigError(
                f"--sandbox bwrap: bubblewrap cannot create the sandbox's namespaces here ({detail}). The kernel "
                "must allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0, and on Debian "
                "kernels kernel.unprivileged_userns_clone=1), and a container must allow creating namespaces; "
                "or start the agent without --sandbox."
            )

    def open(self, job_id: str, jobdir: Path) -> RunSpace:
        return RunSpace(self, job_id, jobdir)

    # --- the bubblewrap command line ---------------------------------------------------------------

    def bwrap_argv(self, work: Path, cwd: Path, *, tmp_bytes: int) -> list[str]:
        assert self.bwrap is not None
        argv = [self.bwrap, "--unshare-all", "--share-net", "--die-with-parent"]
        if self.config.run_as == "root":
            argv += ["--unshare-user", "--uid", "0", "--gid", "0"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        for path in SYSTEM_DIRS:
            p = Path(path)
            if p.is_symlink():
                argv += ["--symlink", os.readlink(p), path]
            elif p.is_dir():
                argv += ["--ro-bind", path, path]
        for path in ETC_FILES:
            argv += ["--ro-bind-try", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
        data_dir = self.config.data_dir.resolve()
        if any(data_dir.is_relative_to(p) for p in SYSTEM_DIRS if Path(p).is_dir() and not Path(p).is_symlink()):
            argv += ["--tmpfs", str(data_dir)]  # never visible, even below a system directory
        for tool in self._tool_paths():
            argv += ["--ro-bind", str(tool), str(tool)]
        if work != Path("/"):
            argv += ["--bind", str(work), str(work)]
            for name in ("passwd", "group"):
                identity = work.parent / name
                if identity.exists():
                    argv += ["--ro-bind", str(identity), f"/etc/{name}"]
        argv += ["--chdir", str(cwd)]
        return argv

    def _tool_paths(self) -> list[Path]:
        paths: list[Path] = []
        # Terraform versions the agent downloaded and verified live in its cache (releases.py).
        downloaded = self.config.cache_root / "terraform"
        for path in (self.config.terraform_dir, self.config.provider_mirror, downloaded):
            if path is not None and path.exists():
                paths.append(path.resolve())
        for key in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            value = self.config.passthrough_env.get(key)
            if value and Path(value).exists():
                paths.append(Path(value).resolve())
        return paths

    # --- uids --------------------------------------------------------------------------------------

    def acquire_uid(self) -> tuple[int, int]:
        """A uid no other run on this host holds (an flock on its lock file); returns (uid, lock fd)."""
        for n in range(UID_SLOTS):
            uid = self.config.sandbox_uid_base + n
            fd = os.open(self.lock_dir / f"uid-{uid}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return uid, fd
        raise ConfigError(f"All {UID_SLOTS} sandbox uids from {self.config.sandbox_uid_base} are in use.")


class RunSpace:
    """One job: its work directory, its uid, its cgroup, and the memory watchdog of the fallback."""

    def __init__(self, sandbox: Sandbox, job_id: str, jobdir: Path) -> None:
        self.sandbox = sandbox
        self.job_id = job_id
        self.work = jobdir / "work"
        self.work.mkdir(exist_ok=True)
        self.uid: int | None = None
        self._uid_lock: int | None = None
        self.cgroup: Path | None = None
        self._oom_before = 0
        self.memory_exceeded = False
        if sandbox.own_uids:
            jobdir.chmod(0o711)  # passable by the run's uid, not listable (see Sandbox.check)
            self.uid, self._uid_lock = sandbox.acquire_uid()
            (jobdir / "passwd").write_text(
                f"root:x:0:0:root:/root:/bin/sh\nrun:x:{self.uid}:{self.uid}:Outpost run:{self.work / 'home'}:/bin/sh\n"
            )
            (jobdir / "group").write_text(f"root:x:0:\nrun:x:{self.uid}:\n")
        if sandbox.cgroup is not None and sandbox.limits.any:
            self.cgroup = sandbox.cgroup.create(f"run-{job_id}-{os.getpid()}", sandbox.limits)

    @property
    def sandboxed(self) -> bool:
        return self.sandbox.kind == "bwrap"

    @property
    def limits(self) -> Limits:
        return self.sandbox.limits

    def launch(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> Launch:
        options: list[str] = []
        if self.cgroup is not None:
            options += ["--cgroup", str(self.cgroup / "cgroup.procs")]
            self._oom_before = lim.oom_kills(self.cgroup)
        elif self.limits.any:
            options += ["--subreaper", *lim.rlimit_options(self.limits, own_uid=self.uid is not None)]
        if not self.sandboxed:
            return Launch(list(argv), dict(env), options)
        if self.uid is not None:
            self._give_work_to_run()
            options += ["--uid", str(self.uid), "--gid", str(self.uid)]
        # bubblewrap keeps SIGINT ignored (see the module's docstring); terraform installs its own handler.
        options.append("--keep-sigint-ignored")
        inner = dict(env, TMPDIR="/tmp")
        tmp_bytes = self.limits.memory_bytes or DEFAULT_TMP_BYTES
        wrapped = [*self.sandbox.bwrap_argv(self.work, cwd, tmp_bytes=tmp_bytes), "--", *argv]
        return Launch(wrapped, inner, options)

    def _give_work_to_run(self) -> None:
        # Files the agent wrote (configuration, state, plan) become the run's; nothing else is. fwalk and
        # chown relative to directory fds, never following a link: the run may have planted some.
        assert self.uid is not None
        for _, dirs, files, dir_fd in os.fwalk(self.work):
            for name in [*dirs, *files]:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, self.uid, self.uid, dir_fd=dir_fd, follow_symlinks=False)
        os.chown(self.work, self.uid, self.uid)
        os.chmod(self.work, 0o700)

    async def watch(self, reaper_pid: int, kill: Callable[[], None]) -> None:
        """The fallback memory limit: kill the run's processes once their resident memory is over it."""
        limit = self.limits.memory_bytes
        if limit is None or self.cgroup is not None:
            return
        while True:
            await asyncio.sleep(lim.WATCH_INTERVAL)
            pids = await asyncio.to_thread(lim.descendants, reaper_pid)
            used = await asyncio.to_thread(lim.resident_bytes, pids)
            if used > limit:
                self.memory_exceeded = True
                log.warning(
                    "job %s: %d MiB resident, over the limit of %d MiB: killing", self.job_id, used >> 20, limit >> 20
                )
                kill()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, 9)
                return

    def killed_for_memory(self) -> bool:
        if self.cgroup is not None:
            return lim.oom_kills(self.cgroup) > self._oom_before
        return self.memory_exceeded

    def memory_message(self) -> str:
        return MEMORY_MESSAGE.format(mb=self.limits.memory_mb)

    def close(self) -> None:
        if self.cgroup is not None:
            lim.remove_cgroup(self.cgroup)
        if self._uid_lock is not None:
            os.close(self._uid_lock)
            self._uid_lock = None
