"""One job: a plan or an apply of one run, in a fresh directory, removed afterwards.

The steps and their order matter: start is reported before anything runs (the run shows planning or
applying; it goes out with the first downloads, each a round trip of its own), output streams while
terraform runs, state is uploaded even after a failed apply, and finish is reported last,
after every log byte is stored, because reporting it frees the agent for its next job.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outpost import logcontext
from outpost.agent import metrics, providers
from outpost.agent.client import Client, JobGone
from outpost.agent.hooks import HookResult, Hooks
from outpost.agent.kept import KeptPlan, PlanKeeper
from outpost.agent.locks import LockAbandoned
from outpost.agent.logstream import LogStream
from outpost.agent.masking import Masker
from outpost.agent.process import Process, Reapers
from outpost.agent.releases import ReleaseError, terraform_binary
from outpost.agent.safefiles import UnsafeFile, read_beneath, write_new
from outpost.agent.sandbox import RunSpace, Sandbox
from outpost.agent.terraform import job_environment, tfvars
from outpost.config import AgentConfig
from outpost.domain.jobs import JobOutcome, Phase
from outpost.errors import AgentError, ConfigError, Unprocessable
from outpost.store import archives

log = logging.getLogger("outpost.agent.job")

OVERRIDE = 'terraform {\n  backend "local" {\n    path = "terraform.tfstate"\n  }\n}\n'
_APPLY_SUMMARY = re.compile(rb"Resources: (\d+) added, (\d+) changed, (\d+) destroyed")
# Terraform's plan summary since 0.12 ("Plan: 1 to add, ..."; 1.5 puts "N to import, " before the rest).
_PLAN_SUMMARY = re.compile(rb"(\d+) to add, (\d+) to change, (\d+) to destroy\.")
MAX_RUN_FILE = 256 * 1024 * 1024  # a state or saved plan; the server takes no larger upload


@dataclass
class JobResult:
    outcome: JobOutcome
    message: str = ""
    has_changes: bool = False
    additions: int = 0
    changes: int = 0
    destructions: int = 0


class StepFailed(AgentError):
    """A preparation step failed; the message is for the run log."""


class Job:
    def __init__(
        self,
        config: AgentConfig,
        client: Client,
        job_id: str,
        token: str,
        agent_label: str,
        sandbox: Sandbox | None = None,
        keeper: PlanKeeper | None = None,
        *,
        phase: str | None = None,
        reapers: Reapers | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.id = job_id
        self.token = token
        self.phase = phase  # as the poll's answer names it, to know what to fetch early (the payload's rules)
        self.agent_label = agent_label
        self.reapers = reapers
        self.process = Process(reapers=reapers)
        self._side: Process | None = None  # a second terraform beside the apply (the plan's JSON)
        self._early: dict[str, asyncio.Task[Any]] = {}  # requests sent before they are needed (run)
        self.cancel_kind: str | None = None  # "cancel" or "force", as applied
        self.fenced = False
        self._kill_timer: asyncio.TimerHandle | None = None
        self._cleanup: list[Path] = []
        self.sandbox = sandbox
        self.space: RunSpace | None = None
        self.keeper = keeper
        self._to_keep: KeptPlan | None = None  # this plan's directory, for the same run's apply (kept.py)
        self._kept = False

    # --- orders from outside -------------------------------------------------------------------------

    def cancel(self, kind: str) -> None:
        """Apply a cancel order: SIGINT once, the group killed after the grace period or at once on force."""
        if self._side is not None:
            self._side.kill_group()  # the plan's JSON is not worth delaying a cancel for
        if kind == "force" or self.fenced:
            self.cancel_kind = "force"
            self.process.kill_group()
            return
        if self.cancel_kind is None:
            self.cancel_kind = "cancel"
            self.process.interrupt()
            loop = asyncio.get_running_loop()
            self._kill_timer = loop.call_later(self.config.kill_grace, self.process.kill_group)

    def fence(self) -> None:
        """The server gave up on this job: stop terraform now, send nothing more."""
        self.fenced = True
        self.process.kill_group()
        if self._side is not None:
            self._side.kill_group()

    # --- execution -----------------------------------------------------------------------------------

    async def run(self) -> None:
        logcontext.bind(job_id=self.id)
        started = time.monotonic()
        metrics.JOBS_RUNNING.inc()
        root = self.config.data_dir / "jobs"
        root.mkdir(parents=True, exist_ok=True)
        # The job directory is the agent's (mode 0700: the log spool lives here); terraform works in its
        # "work" subdirectory, the only part a sandboxed run sees.
        jobdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-", dir=root))
        logs: LogStream | None = None
        try:
            if self.sandbox is not None:
                self.space = self.sandbox.open(self.id, jobdir)
                self.process.space = self.space
            # The job's details, its start and the files it will need, asked for at once: over a slow link
            # each request is a round trip. A plan reads the configuration; an apply may find it in the
            # plan's directory (kept.py), and otherwise reads it once it knows.
            wanted = ["state", *(["configuration"] if self.phase == Phase.PLAN.value else [])]
            self._early = {
                what: asyncio.create_task(self.client.download(self.id, self.token, what)) for what in wanted
            }
            starting = asyncio.create_task(self.client.start(self.id, self.token))
            self._early["start"] = starting
            payload = await self.client.job(self.id, self.token)
            logcontext.bind(run_id=payload["run"]["id"], workspace_id=payload["workspace"]["id"])
            logs = LogStream(
                self.client,
                self.id,
                self.token,
                jobdir / "log.spool",
                base=int(payload.get("log_size", 0)),
                on_cancel=self.cancel,
                masker=Masker([v["value"] for v in payload["variables"] if v.get("sensitive")]),
            )
            await starting
            logs.start()
            try:
                result = await self._execute(payload, jobdir, logs)
            except StepFailed as exc:
                logs.line(f"Error: {exc}")
                result = JobResult(JobOutcome.ERRORED, str(exc))
            except JobGone:
                raise
            except Exception as exc:  # an agent-side failure is the run's error, not the agent's death
                log.exception("job %s failed", self.id)
                result = JobResult(JobOutcome.ERRORED, f"The agent failed to run the job: {exc}")
            if self.cancel_kind is not None and result.outcome != JobOutcome.SUCCEEDED:
                result.outcome = JobOutcome.CANCELED
                result.message = result.message or "Canceled."
            await logs.close()
            await self.client.finish(
                self.id,
                self.token,
                {
                    "outcome": result.outcome.value,
                    "message": result.message,
                    "has_changes": result.has_changes,
                    "additions": result.additions,
                    "changes": result.changes,
                    "destructions": result.destructions,
                    "log_size": logs.size,
                },
            )
            if self._to_keep is not None and self.keeper is not None and result.outcome == JobOutcome.SUCCEEDED:
                self.keeper.keep(self._to_keep)
                self._kept = True
            log.info("job %s finished: %s", self.id, result.outcome.value)
            metrics.JOBS.labels(payload["phase"], result.outcome.value).inc()
            metrics.JOB_SECONDS.labels(payload["phase"]).observe(time.monotonic() - started)
        except JobGone as exc:
            self.fence()
            log.warning("job %s abandoned: the server no longer accepts it (%s)", self.id, exc)
            if logs is not None:
                await logs.abort()
        finally:
            for task in self._early.values():  # a job that failed early leaves none running, or unread
                _discard(task)
            metrics.JOBS_RUNNING.dec()
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self.process.kill_group()
            if self._side is not None:
                self._side.kill_group()
            if self.space is not None:
                self.space.close()
            if self._kept:
                (jobdir / "log.spool").unlink(missing_ok=True)
            for path in [*([] if self._kept else [jobdir]), *self._cleanup]:
                await asyncio.to_thread(shutil.rmtree, path, True)

    async def _execute(self, payload: dict[str, Any], jobdir: Path, logs: LogStream) -> JobResult:
        phase = Phase(payload["phase"])
        workspace = payload["workspace"]
        run = payload["run"]
        try:
            terraform = await terraform_binary(
                self.config,
                workspace["terraform_version"],
                logs.line,
                self.client,
                lambda: self.cancel_kind is not None,
            )
        except LockAbandoned:
            return JobResult(JobOutcome.CANCELED, "Canceled while waiting for a Terraform download.")
        except ReleaseError as exc:
            metrics.DOWNLOADS.labels("failed").inc()
            raise StepFailed(str(exc)) from None
        except ConfigError as exc:
            raise StepFailed(exc.detail) from None
        version = terraform.parent.name

        # The header: Terraform Cloud's three lines, which the terraform CLI drops from apply logs.
        logs.line(f"Terraform v{version}")
        logs.line(f"on linux_amd64 (Outpost agent {self.agent_label})")
        logs.line("Initializing plugins and modules...")

        # The apply of a plan this agent made runs in the plan's directory when it is still here (kept.py).
        kept = None
        if phase == Phase.APPLY and self.keeper is not None and self._keepable:
            kept = self.keeper.take(run["id"], payload.get("plan_sha256"))
        if kept is not None:
            self._cleanup.append(kept.root)
            work, workdir = kept.work, kept.workdir
            log.info("job %s: applying in the plan's directory (no second download or init)", self.id)
        else:
            work, workdir = await self._prepare(jobdir, workspace, payload["variables"])
        prior = await self._download("state")
        if prior:
            (workdir / "terraform.tfstate").write_bytes(prior)
        else:
            (workdir / "terraform.tfstate").unlink(missing_ok=True)

        home = work / "home"
        home.mkdir(exist_ok=True)
        # A short TMPDIR of its own: provider plugins put Unix sockets there, and a socket path over
        # 108 bytes (easy under a deep data directory) makes the plugin fail to start.
        tmp = Path(tempfile.mkdtemp(prefix="outpost-"))
        self._cleanup.append(tmp)
        rc_file = work / "terraformrc"
        rc_file.write_text(providers.cli_config(self.config, use_cache=self._shared_cache))
        env = job_environment(
            home=home,
            tmp=tmp,
            cli_config_file=rc_file,
            workspace_env={v["key"]: v["value"] for v in payload["variables"] if v["category"] == "env"},
            passthrough=self.config.passthrough_env,
        )
        tf = str(terraform)

        # Hooks (hooks.py): pre before init, its exports into terraform's environment; post after the
        # operation whatever its result, unless the server already gave up on the job.
        hooks = Hooks(self.config.hooks_dir, self.config.hook_timeouts, self.process, logs, jobdir, run, workspace)
        pre = await hooks.run(f"pre-{phase.value}", env, workdir)
        self._count_hook(f"pre-{phase.value}", pre)
        if pre.error is not None:
            return JobResult(JobOutcome.FAILED, pre.error)
        env.update(pre.exports)
        # An older server does not say whether the plan's JSON is stored: it is, since it was the plan's.
        plan_json_stored = bool(payload.get("plan_json_stored", True))
        result = await self._operate(phase, tf, workdir, work, env, run, logs, prior, plan_json_stored, kept)
        if self.fenced or self.cancel_kind == "force":
            return result
        post = await hooks.run(f"post-{phase.value}", env, workdir)
        self._count_hook(f"post-{phase.value}", post)
        if post.error is not None and result.outcome == JobOutcome.SUCCEEDED:
            result.outcome, result.message = JobOutcome.FAILED, post.error
        return result

    async def _prepare(
        self, jobdir: Path, workspace: dict[str, Any], variables: list[dict[str, Any]]
    ) -> tuple[Path, Path]:
        """A fresh work directory with the run's configuration: (work directory, terraform's working directory)."""
        work = jobdir / "work"
        work.mkdir(exist_ok=True)
        config_dir = work / "config"
        config_dir.mkdir()
        archive = await self._download("configuration")
        if not archive:
            raise StepFailed("The run's configuration is empty.")
        await asyncio.to_thread(_extract, archive, config_dir)
        workdir = (config_dir / str(workspace.get("working_directory", ""))).resolve()
        if not workdir.is_relative_to(config_dir.resolve()) or not workdir.is_dir():
            raise StepFailed(
                f"The working directory {workspace.get('working_directory')!r} is not in the configuration."
            )
        (workdir / "outpost_override.tf").write_text(OVERRIDE)
        (workdir / "zzz_outpost.auto.tfvars").write_text(tfvars(variables))
        return work, workdir

    async def _download(self, what: str) -> bytes | None:
        early = self._early.pop(what, None)
        return await early if early is not None else await self.client.download(self.id, self.token, what)

    @property
    def _keepable(self) -> bool:
        """Whether this job's directory may serve another job: not a sandboxed run's (kept.py)."""
        return self.space is None or not self.space.sandboxed

    @staticmethod
    def _count_hook(hook: str, result: HookResult) -> None:
        if result.ran:
            metrics.HOOKS.labels(hook, "failed" if result.error else "passed").inc()

    @property
    def _shared_cache(self) -> bool:
        """The agent's provider plugin cache is shared by its jobs; a sandboxed run does not get it, since
        a cache runs can write to would let one plant a provider binary that another executes."""
        return self.space is None or not self.space.sandboxed

    async def _operate(
        self,
        phase: Phase,
        tf: str,
        workdir: Path,
        work: Path,
        env: dict[str, str],
        run: dict[str, Any],
        logs: LogStream,
        prior: bytes | None,
        plan_json_stored: bool,
        kept: KeptPlan | None = None,
    ) -> JobResult:
        if kept is not None:  # initialized by the plan, in this directory
            if self.cancel_kind:
                return JobResult(JobOutcome.CANCELED, "Canceled before terraform ran.")
            return await self._apply(tf, workdir, work, env, logs, prior, plan_json_stored, plan_ready=True)
        init_out = bytearray()
        waiting = time.monotonic()
        try:
            async with providers.init_lock(
                self.config, logs.line, give_up=lambda: self.cancel_kind is not None, use_cache=self._shared_cache
            ):
                metrics.CACHE_WAIT.observe(time.monotonic() - waiting)
                if self.cancel_kind:
                    return JobResult(JobOutcome.CANCELED, "Canceled before terraform ran.")
                code = await self.process.run(
                    [tf, "init", "-input=false", "-no-color"], cwd=workdir, env=env, output=init_out.extend
                )
        except LockAbandoned:
            return JobResult(JobOutcome.CANCELED, "Canceled while waiting for the provider plugin cache.")
        if code != 0:
            logs.write(bytes(init_out))
            return self._failed("terraform init", code)
        if self.cancel_kind:
            return JobResult(JobOutcome.CANCELED, "Canceled before terraform ran.")

        if phase == Phase.PLAN:
            return await self._plan(tf, workdir, work, env, run, logs)
        return await self._apply(tf, workdir, work, env, logs, prior, plan_json_stored)

    async def _render_plan_json(self, tf: str, workdir: Path, env: dict[str, str], plan_file: Path) -> bytes:
        """The plan's JSON stored, or else the output of the `show` that failed (for the log, after the
        apply's own output rather than inside it)."""
        self._side = Process(self.space, self.reapers)
        # Niced: where cores are few, the apply it runs beside goes first (10 resources here: the apply
        # took 0.65 s beside a niced show, 0.70 s beside a plain one, 0.61 s alone).
        code, shown = await _show_json(self._side, tf, workdir, env, plan_file, nice=10)
        if code != 0:
            return shown + f"Warning: terraform show -json exited with status {code}: the plan has no JSON.\n".encode()
        if not self.fenced:
            await self.client.upload(self.id, self.token, "plan-json", shown)
        return b""

    def _failed(self, step: str, code: int) -> JobResult:
        if self.space is not None and self.space.killed_for_memory():
            return JobResult(JobOutcome.FAILED, f"{step} was stopped: {self.space.memory_message()}")
        if self.cancel_kind:
            return JobResult(JobOutcome.CANCELED, f"{step} was canceled.")
        return JobResult(JobOutcome.FAILED, f"{step} exited with status {code}.")

    async def _plan(
        self, tf: str, workdir: Path, work: Path, env: dict[str, str], run: dict[str, Any], logs: LogStream
    ) -> JobResult:
        plan_file = work / "plan.tfplan"
        argv = [tf, "plan", "-input=false", "-no-color", f"-out={plan_file}"]
        if run["is_destroy"]:
            argv.append("-destroy")
        if run["refresh_only"]:
            argv.append("-refresh-only")
        if not run["refresh"]:
            argv.append("-refresh=false")
        argv += [f"-target={t}" for t in run["target_addrs"]]
        argv += [f"-replace={r}" for r in run["replace_addrs"]]
        # A plan with changes that applies at once leaves `show -json` (0.3 to 0.5 s, whatever the plan's
        # size) to the apply, which runs it beside `terraform apply`: the exit status says whether there
        # are changes and the plan's summary line gives the counts. Any other plan is reported from its
        # JSON, stored before the plan ends, since someone may read it before deciding what comes next.
        defer_json = bool(run.get("auto_apply")) and not run["plan_only"] and not run["refresh_only"]
        if defer_json:
            argv.append("-detailed-exitcode")
        tail = _Tail(logs)
        code = await self.process.run(argv, cwd=workdir, env=env, output=tail.write)
        deferred = defer_json and code == 2
        if code != 0 and not deferred:
            return self._failed("terraform plan", code)
        counts: dict[str, Any]
        if deferred:
            counts = {"has_changes": True, **summary_counts(_PLAN_SUMMARY, bytes(tail.last))}
        else:
            code, shown = await _show_json(self.process, tf, workdir, env, plan_file)
            if code != 0:
                logs.write(shown)
                return self._failed("terraform show", code)
            counts = summarize_plan(json.loads(shown))
            await self.client.upload(self.id, self.token, "plan-json", shown)
        if not run["plan_only"]:
            saved = _run_file(work, plan_file)
            if saved is None:
                raise StepFailed("terraform plan left no saved plan.")
            await self.client.upload(self.id, self.token, "plan-file", saved)
            if counts["has_changes"] and self.keeper is not None and self._keepable:
                self._to_keep = KeptPlan(
                    run_id=run["id"],
                    root=work.parent,
                    work=work,
                    workdir=workdir,
                    plan_sha256=hashlib.sha256(saved).hexdigest(),
                    kept_at=time.monotonic(),
                )
        return JobResult(JobOutcome.SUCCEEDED, **counts)

    async def _apply(
        self,
        tf: str,
        workdir: Path,
        work: Path,
        env: dict[str, str],
        logs: LogStream,
        prior: bytes | None,
        plan_json_stored: bool,
        *,
        plan_ready: bool = False,
    ) -> JobResult:
        plan_file = work / "plan.tfplan"
        if not plan_ready:
            data = await self.client.download(self.id, self.token, "plan-file")
            if not data:
                raise StepFailed("The run's saved plan is missing.")
            try:
                write_new(work, plan_file.relative_to(work), data)
            except UnsafeFile as exc:
                raise StepFailed(f"The saved plan cannot be written: {exc}") from None
        seen = _Tail(logs)
        # The plan's JSON, when its plan left it to this apply (see _plan): rendered and uploaded beside the
        # apply, by a process of its own that a cancel or a fence stops with the apply's. A job with limits
        # renders it after the apply instead: beside it, the two would share (and might exceed) them.
        showing = None
        beside = self.space is None or not self.space.limits.any
        if not plan_json_stored and beside:
            showing = asyncio.create_task(self._render_plan_json(tf, workdir, env, plan_file))
        try:
            code = await self.process.run(
                [tf, "apply", "-input=false", "-no-color", str(plan_file)], cwd=workdir, env=env, output=seen.write
            )
            # Upload the state whenever it changed, also after a failed or canceled apply: it is the truth now.
            new_state = None if self.fenced else _run_file(work, workdir / "terraform.tfstate")
            if new_state is not None:
                if new_state and new_state != prior:
                    await self.client.upload(self.id, self.token, "state", new_state)
            if not plan_json_stored and not (self.fenced or self.cancel_kind):
                showing = showing or asyncio.create_task(self._render_plan_json(tf, workdir, env, plan_file))
                failure = await showing
                if failure and not (self.fenced or self.cancel_kind):
                    logs.write(failure)
        finally:
            if showing is not None:
                _discard(showing)
        counts = summary_counts(_APPLY_SUMMARY, bytes(seen.last))
        if code != 0:
            result = self._failed("terraform apply", code)
            for key, value in counts.items():
                setattr(result, key, value)
            return result
        return JobResult(JobOutcome.SUCCEEDED, **counts)  # type: ignore[arg-type]


class _Tail:
    """Terraform's output on its way to the log, its last 8 KiB kept for the summary line."""

    def __init__(self, logs: LogStream) -> None:
        self.logs = logs
        self.last = bytearray()

    def write(self, chunk: bytes) -> None:
        self.logs.write(chunk)
        self.last.extend(chunk[-4096:])
        del self.last[:-8192]


async def _show_json(
    process: Process, tf: str, workdir: Path, env: dict[str, str], plan_file: Path, *, nice: int = 0
) -> tuple[int, bytes]:
    """`terraform show -json` of the saved plan: its exit status and output (the JSON, or why not)."""
    shown = bytearray()
    argv = [tf, "show", "-json", str(plan_file)]
    code = await process.run(argv, cwd=workdir, env=env, output=shown.extend, nice=nice)
    return code, bytes(shown)


def _discard(task: asyncio.Task[Any]) -> None:
    """A task no longer waited for: cancelled if still running, its exception retrieved if it ended (the
    error already on its way up is the one to report)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def summary_counts(pattern: re.Pattern[bytes], output: bytes) -> dict[str, int]:
    """additions, changes and destructions from terraform's summary line in `output`, the last one
    (none when the line is missing, as in a plan that changes only outputs)."""
    found = pattern.findall(output)
    if not found:
        return {}
    return dict(zip(("additions", "changes", "destructions"), map(int, found[-1]), strict=True))


def _run_file(work: Path, path: Path) -> bytes | None:
    """A file terraform left in the work directory, read without following links the run may have planted
    (see safefiles); an unsafe one fails the job."""
    try:
        return read_beneath(work, path.relative_to(work), MAX_RUN_FILE)
    except UnsafeFile as exc:
        raise StepFailed(f"The run left an unsafe file: {exc}.") from None


def _extract(archive: bytes, dest: Path) -> None:
    """The server's checks again (a server is not trusted to have made them), then tarfile's "data" filter:
    no absolute paths, no escaping links, no device files, and nothing written outside `dest`."""
    try:
        archives.validate(archive)
    except Unprocessable as exc:
        raise StepFailed(f"The configuration archive was refused: {exc.detail}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise StepFailed(f"The configuration archive could not be extracted: {exc}") from None


def summarize_plan(plan: dict[str, Any]) -> dict[str, Any]:
    additions = changes = destructions = 0
    for change in plan.get("resource_changes") or []:
        actions = change.get("change", {}).get("actions", [])
        if "create" in actions:
            additions += 1
        if "delete" in actions:
            destructions += 1
        if actions == ["update"]:
            changes += 1
    outputs_changed = any(
        o.get("actions") not in (["no-op"], None) for o in (plan.get("output_changes") or {}).values()
    )
    return {
        "has_changes": bool(additions or changes or destructions or outputs_changed),
        "additions": additions,
        "changes": changes,
        "destructions": destructions,
    }
