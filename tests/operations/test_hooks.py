"""Hooks with a real agent, real terraform and real hook processes: passing and exporting variables,
failing, running after a failed operation, timing out (their whole process group killed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outpost.api_client import OutpostAPI
from tests.conftest import EXAMPLES
from tests.support.faults import leftover_processes
from tests.support.processes import Proc, wait_until

pytestmark = pytest.mark.e2e

FINAL = {"applied", "errored", "planned", "planned_and_finished", "canceled"}


def _hooks(agent: Proc, **scripts: str) -> Path:
    """Write executable hooks (pre_plan="..." -> hooks/terraform-pre-plan) into the agent's data dir."""
    data_dir = Path(agent.argv[agent.argv.index("--data-dir") + 1])
    hooks = data_dir / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = hooks / f"terraform-{name.replace('_', '-')}"
        path.write_text("#!/bin/sh\n" + body.strip() + "\n")
        path.chmod(0o755)
    return hooks


def _pool(api: OutpostAPI, org: str) -> tuple[str, str]:
    pool = api.create_pool(org, "hooks")
    return pool["id"], api.create_agent_token(pool["id"], "hooks")[1]


def _run(api: OutpostAPI, org: str, pool_id: str, name: str, config: Path, **attrs: object) -> dict[str, object]:
    ws = api.create_workspace(org, name, execution_mode="agent", agent_pool_id=pool_id, **attrs)
    cv = api.upload_configuration(ws["id"], config)
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], FINAL, timeout=180)
    return {"ws": ws, "run": run}


def _in_order(log: str, *parts: str) -> None:
    positions = [log.find(part) for part in parts]
    assert -1 not in positions, f"missing {[p for p, i in zip(parts, positions, strict=True) if i < 0]} in:\n{log}"
    assert positions == sorted(positions), f"out of order {parts} in:\n{log}"


def test_hooks_run_around_terraform_and_export_variables(api: OutpostAPI, org: tuple[str, str], start) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool(api, org[0])
    agent = start(token)
    _hooks(
        agent,
        pre_plan="""
echo "pre-plan hook: run=$OUTPOST_RUN_ID ws=$OUTPOST_ORGANIZATION_NAME/$OUTPOST_WORKSPACE_NAME id=$OUTPOST_WORKSPACE_ID phase=$OUTPOST_RUN_PHASE hook=$OUTPOST_HOOK"
echo "an error line of the hook" >&2
echo "TF_VAR_greeting=greeting exported by the pre-plan hook" >> "$OUTPOST_HOOK_ENV"
echo "# comments and blank lines are skipped" >> "$OUTPOST_HOOK_ENV"
echo "HOOK_SECRET=hook-secret-value" >> "$OUTPOST_HOOK_ENV"
""",
        post_plan='echo "post-plan hook: the secret is $([ "$HOOK_SECRET" = hook-secret-value ] && echo seen)"',
        pre_apply='echo "pre-apply hook: phase=$OUTPOST_RUN_PHASE"',
        post_apply='echo "post-apply hook: state $(test -s terraform.tfstate && echo written)"',
    )
    done = _run(api, org[0], pool_id, "hooked", EXAMPLES / "hello", auto_apply=True)
    run, ws = done["run"], done["ws"]
    assert isinstance(run, dict) and isinstance(ws, dict)
    plan = api.read_log(run, "plan")
    apply = api.read_log(run, "apply")
    assert run["attributes"]["status"] == "applied", plan + apply
    _in_order(
        plan,
        "Running the terraform-pre-plan hook",
        f"pre-plan hook: run={run['id']} ws={org[0]}/hooked id={ws['id']} phase=plan hook=pre-plan",
        "an error line of the hook",
        "The terraform-pre-plan hook exported HOOK_SECRET, TF_VAR_greeting",
        "Plan: 1 to add",
        "Running the terraform-post-plan hook",
        "post-plan hook: the secret is seen",
        "The terraform-post-plan hook finished",
    )
    assert "hook-secret-value" not in plan, "exported values are never logged"
    _in_order(apply, "pre-apply hook: phase=apply", "Apply complete!", "post-apply hook: state written")
    # The export reached terraform: the variable's value came from the hook.
    assert api.current_outputs(ws["id"])["greeting"] == "greeting exported by the pre-plan hook"


def test_failing_hooks_fail_the_run(api: OutpostAPI, org: tuple[str, str], start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool(api, org[0])
    agent = start(token)
    _hooks(
        agent,
        pre_apply='echo "pre-apply hook refuses"; exit 3',
        post_plan="""
echo "post-plan hook after a plan that exited with whatever status"
[ "$OUTPOST_WORKSPACE_NAME" = post-fails ] && exit 1
exit 0
""",
    )
    # A pre hook's failure stops the job before terraform: nothing applied, no state.
    refused = _run(api, org[0], pool_id, "pre-fails", EXAMPLES / "hello", auto_apply=True)["run"]
    assert isinstance(refused, dict)
    apply = api.read_log(refused, "apply")
    assert refused["attributes"]["status"] == "errored", apply
    assert "pre-apply hook refuses" in apply
    assert "Error: The terraform-pre-apply hook exited with status 3." in apply
    assert "Apply complete" not in apply and "null_resource.hello: Creating" not in apply
    assert refused["attributes"]["error-message"] == "The terraform-pre-apply hook exited with status 3."

    # A post hook runs after a failed operation too (the run keeps the operation's error) ...
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main.tf").write_text('variable "required" {\n  type = string\n}\n')
    failed = _run(api, org[0], pool_id, "plan-fails", broken)["run"]
    assert isinstance(failed, dict)
    plan = api.read_log(failed, "plan")
    assert failed["attributes"]["status"] == "errored"
    _in_order(plan, "No value for required variable", "post-plan hook after a plan")
    assert failed["attributes"]["error-message"] == "terraform plan exited with status 1."

    # ... and its own failure fails a run whose operation succeeded.
    post = _run(api, org[0], pool_id, "post-fails", EXAMPLES / "hello")["run"]
    assert isinstance(post, dict)
    plan = api.read_log(post, "plan")
    assert post["attributes"]["status"] == "errored", plan
    _in_order(plan, "Plan: 1 to add", "Error: The terraform-post-plan hook exited with status 1.")


def test_a_hook_past_its_timeout_is_killed_with_its_children(  # type: ignore[no-untyped-def]
    api: OutpostAPI, org: tuple[str, str], start
) -> None:
    pool_id, token = _pool(api, org[0])
    agent = start(token, "--hook-timeout", "30", "--hook-timeout", "pre-plan=1")
    hooks = _hooks(agent, pre_plan='echo "pre-plan hook starts a child"; sleep 300 & sleep 301; echo never')
    began = time.monotonic()
    run = _run(api, org[0], pool_id, "slow-hook", EXAMPLES / "hello")["run"]
    assert isinstance(run, dict)
    elapsed = time.monotonic() - began
    plan = api.read_log(run, "plan")
    assert run["attributes"]["status"] == "errored", plan
    assert "pre-plan hook starts a child" in plan and "never" not in plan
    assert "Error: The terraform-pre-plan hook did not finish within 1 s and was stopped." in plan
    assert elapsed < 30, f"the run took {elapsed:.0f} s: the 1 s timeout was not applied"
    data_dir = hooks.parent
    wait_until(lambda: not leftover_processes(data_dir), 10, what="the hook's processes to be gone")

    # A hook that is not executable is an error too, not silently skipped.
    (hooks / "terraform-pre-plan").chmod(0o644)
    run = _run(api, org[0], pool_id, "not-executable", EXAMPLES / "hello")["run"]
    assert isinstance(run, dict)
    assert run["attributes"]["status"] == "errored"
    assert "terraform-pre-plan is not an executable file: chmod +x it, or remove it." in api.read_log(run, "plan")
