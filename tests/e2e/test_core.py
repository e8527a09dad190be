"""End to end: a real server, real `outpost agent` processes, real terraform."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from outpost.agent.job import summarize_plan
from outpost.api_client import OutpostAPI
from tests.conftest import CONFIGS, EXAMPLES
from tests.support.processes import Proc, clean_env, free_port, wait_until

pytestmark = pytest.mark.e2e

AGENT_LINE = re.compile(r"on linux_amd64 \(Outpost agent (\S+) \((agent-\w+)\)\)")


def _pool_with_token(api: OutpostAPI, org: str, name: str = "pool") -> tuple[str, str]:
    pool = api.create_pool(org, name)
    _, token = api.create_agent_token(pool["id"], f"{name} token")
    return pool["id"], token


def _wait_idle(api: OutpostAPI, pool_id: str, count: int) -> list[dict[str, object]]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (lambda a: a if len(a) >= count else None)(
            [x for x in api.agents(pool_id) if x["attributes"]["status"] == "idle"]
        ),
        30,
        what=f"{count} idle agents",
    )


def test_two_agents_apply_ten_workspaces(api: OutpostAPI, org: tuple[str, str], start) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool_with_token(api, org[0])
    start(token, name="alpha")
    start(token, name="beta")
    _wait_idle(api, pool_id, 2)

    runs = []
    for i in range(10):
        ws = api.create_workspace(org[0], f"ws-{i}", execution_mode="agent", agent_pool_id=pool_id, auto_apply=True)
        api.add_variable(ws["id"], "label", f"ws{i}")
        cv = api.upload_configuration(ws["id"], CONFIGS / "counter")
        runs.append((ws["id"], api.create_run(ws["id"], cv)["id"]))

    executed_by: dict[str, set[str]] = {}
    for ws_id, run_id in runs:
        run = api.wait_for_run(run_id, {"applied", "errored", "canceled"}, timeout=240)
        assert run["attributes"]["status"] == "applied", api.read_log(run, "plan") + api.read_log(run, "apply")
        for phase in ("plan", "apply"):
            names = AGENT_LINE.findall(api.read_log(run, phase))
            assert len(names) == 1, f"{run_id} {phase} ran {len(names)} times: {names}"
            executed_by.setdefault(names[0][0], set()).add(f"{run_id}/{phase}")
        outputs = api.current_outputs(ws_id)
        label = api.request("GET", f"/workspaces/{ws_id}/vars")["data"][0]["attributes"]["value"]
        assert outputs["labels"] == [f"{label}-{k}" for k in range(3)]
        assert outputs["secret"] is None  # sensitive outputs are not revealed
    assert set(executed_by) == {"alpha", "beta"}, executed_by
    assert sum(len(v) for v in executed_by.values()) == 20


def test_single_agent_exits_zero_and_runs_with_a_clean_environment(
    api: OutpostAPI,
    org: tuple[str, str],
    start,  # type: ignore[no-untyped-def]
) -> None:
    pool_id, token = _pool_with_token(api, org[0])
    agent: Proc = start(token, "--single", env={"UNRELATED_HOST_VAR": "host-secret-value"})
    _wait_idle(api, pool_id, 1)
    ws = api.create_workspace(org[0], "env", execution_mode="agent", agent_pool_id=pool_id)
    api.add_variable(ws["id"], "WORKSPACE_ENV_VAR", "from-the-workspace", category="env")
    cv = api.upload_configuration(ws["id"], CONFIGS / "env_dump")
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"})
    assert run["attributes"]["status"] == "planned"
    assert agent.wait(30) == 0, agent.output()  # --single: one job (the plan), then exit 0

    # The apply goes to a second single agent: plan and apply may run on different agents.
    second: Proc = start(token, "--single", name="second")
    api.action(run["id"], "apply")
    run = api.wait_for_run(run["id"], {"applied", "errored"})
    log = api.read_log(run, "apply")
    assert run["attributes"]["status"] == "applied", log
    assert second.wait(30) == 0
    printed = [line.split("(local-exec): ", 1)[1] for line in log.splitlines() if "(local-exec): " in line]
    dump = "\n".join(printed[printed.index("ENV-DUMP-BEGIN") + 1 : printed.index("ENV-DUMP-END")])
    assert "PATH=" in dump and "TF_IN_AUTOMATION=1" in dump
    assert "WORKSPACE_ENV_VAR=from-the-workspace" in dump
    assert "OUTPOST_AGENT_TOKEN" not in dump
    assert token not in log
    assert "UNRELATED_HOST_VAR" not in dump and "host-secret-value" not in log
    statuses = {a["attributes"]["name"]: a["attributes"]["status"] for a in api.agents(pool_id)}
    assert statuses == {"agent0": "exited", "second": "exited"}


def test_remote_mode_runs_on_the_builtin_agent(api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "remote", execution_mode="remote")
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"})
    assert run["attributes"]["status"] == "planned", api.read_log(run, "plan")
    assert "Outpost agent builtin" in api.read_log(run, "plan")
    api.action(run["id"], "apply")
    run = api.wait_for_run(run["id"], {"applied", "errored"})
    assert run["attributes"]["status"] == "applied"
    assert api.current_outputs(ws["id"])["greeting"] == "Hello from an Outpost agent"


def test_changing_execution_mode_after_plan_errors_the_apply(api: OutpostAPI, org: tuple[str, str], start) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool_with_token(api, org[0])
    start(token)
    ws = api.create_workspace(org[0], "switch", execution_mode="agent", agent_pool_id=pool_id)
    cv = api.upload_configuration(ws["id"], EXAMPLES / "hello")
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"})
    assert run["attributes"]["status"] == "planned"
    api.update_workspace(ws["id"], execution_mode="remote")
    api.action(run["id"], "apply")
    run = api.wait_for_run(run["id"], {"errored", "applied"})
    assert run["attributes"]["status"] == "errored"
    assert "execution mode changed from agent to remote" in run["attributes"]["error-message"]
    assert "execution mode changed" in api.read_log(run, "apply")
    # The workspace is free again: a new run plans on the built-in agent.
    again = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"})
    assert again["attributes"]["status"] == "planned"


def test_runs_of_one_workspace_wait_in_order(api: OutpostAPI, org: tuple[str, str], start) -> None:  # type: ignore[no-untyped-def]
    pool_id, token = _pool_with_token(api, org[0])
    start(token, "--concurrency", "3")
    ws = api.create_workspace(org[0], "queue", execution_mode="agent", agent_pool_id=pool_id)
    cv = api.upload_configuration(ws["id"], CONFIGS / "counter")
    first = api.create_run(ws["id"], cv)["id"]
    second = api.create_run(ws["id"], cv)["id"]
    api.wait_for_run(first, {"planned"})
    assert api.run(second)["attributes"]["status"] == "pending"
    assert api.run(second)["attributes"]["position-in-queue"] == 1
    api.action(first, "discard")
    assert api.wait_for_run(second, {"planned"})["attributes"]["status"] == "planned"
    assert api.run(first)["attributes"]["status"] == "discarded"


def test_an_agent_applies_in_the_directory_of_its_own_plan(  # type: ignore[no-untyped-def]
    api: OutpostAPI, org: tuple[str, str], start, tmp_path: Path
) -> None:
    pool_id, token = _pool_with_token(api, org[0])
    agent: Proc = start(token)
    jobs = tmp_path / "agent0" / "jobs"  # the start fixture's data directory for its first agent
    ws = api.create_workspace(org[0], "kept", execution_mode="agent", agent_pool_id=pool_id)
    api.add_variable(ws["id"], "label", "kept")
    cv = api.upload_configuration(ws["id"], CONFIGS / "counter")
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned", "errored"})
    assert run["attributes"]["status"] == "planned", api.read_log(run, "plan")
    (kept,) = wait_until(lambda: list(jobs.iterdir()) or None, 10, what="the kept plan directory")
    assert (kept / "work" / "plan.tfplan").is_file()

    api.action(run["id"], "apply")
    run = api.wait_for_run(run["id"], {"applied", "errored"})
    assert run["attributes"]["status"] == "applied", api.read_log(run, "apply")
    assert api.current_outputs(ws["id"])["labels"] == ["kept-0", "kept-1", "kept-2"]
    assert agent.output().count("applying in the plan's directory") == 1
    wait_until(lambda: not kept.exists(), 10, what="the kept directory removed after the apply")
    # The state the reused directory produced is the real one: planning again finds nothing to do.
    again = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned_and_finished", "planned", "errored"})
    assert again["attributes"]["status"] == "planned_and_finished", api.read_log(again, "plan")


def test_an_auto_applied_plan_leaves_its_json_to_the_apply(api: OutpostAPI, org: tuple[str, str], start) -> None:  # type: ignore[no-untyped-def]
    """A plan that applies at once is reported from terraform's exit status and summary line; its JSON is
    rendered beside the apply, by whichever agent applies. Any other plan stores its JSON itself."""
    pool_id, token = _pool_with_token(api, org[0])
    planner: Proc = start(token, "--single", name="planner")
    ws = api.create_workspace(org[0], "deferred", execution_mode="agent", agent_pool_id=pool_id, auto_apply=True)
    label = api.add_variable(ws["id"], "label", "one")
    cv = api.upload_configuration(ws["id"], CONFIGS / "counter")

    # The planner exits after its plan: the apply waits for an agent that has neither the plan's directory
    # nor its JSON, and the run's counts come from the plan's summary line.
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"apply_queued", "errored"})
    assert run["attributes"]["status"] == "apply_queued", api.read_log(run, "plan")
    assert planner.wait(30) == 0
    plan = api.phase(run, "plan")
    assert plan["attributes"]["resource-additions"] == 3 and run["attributes"]["has-changes"] is True
    assert api.http.get(f"/plans/{plan['id']}/json-output").status_code == 404  # not yet: the apply renders it

    applier: Proc = start(token, name="applier")
    run = api.wait_for_run(run["id"], {"applied", "errored"})
    assert run["attributes"]["status"] == "applied", api.read_log(run, "apply")
    assert "terraform show -json" not in api.read_log(run, "apply")  # no warning: the JSON was stored
    rendered = api.request("GET", f"/plans/{plan['id']}/json-output")
    assert summarize_plan(rendered) == {"has_changes": True, "additions": 3, "changes": 0, "destructions": 0}

    # Replacing three and adding one, planned and applied by one agent in one directory: the summary line's
    # counts are the JSON's.
    api.request(
        "PATCH",
        f"/workspaces/{ws['id']}/vars/{label['id']}",
        {"data": {"type": "vars", "id": label["id"], "attributes": {"value": "two"}}},
    )
    api.add_variable(ws["id"], "n", "4")
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"applied", "errored"})
    assert run["attributes"]["status"] == "applied", api.read_log(run, "plan") + api.read_log(run, "apply")
    plan = api.phase(run, "plan")
    counts = {k: plan["attributes"][f"resource-{k}"] for k in ("additions", "changes", "destructions")}
    assert counts == {"additions": 4, "changes": 0, "destructions": 3}
    rendered = api.request("GET", f"/plans/{plan['id']}/json-output")
    assert summarize_plan(rendered) == {"has_changes": True, **counts}
    assert applier.output().count("applying in the plan's directory") == 1
    assert api.current_outputs(ws["id"])["labels"] == [f"two-{k}" for k in range(4)]

    # Nothing to apply: the plan job stores the JSON itself.
    run = api.wait_for_run(api.create_run(ws["id"], cv)["id"], {"planned_and_finished", "applied", "errored"})
    assert run["attributes"]["status"] == "planned_and_finished", api.read_log(run, "plan")
    rendered = api.request("GET", f"/plans/{api.phase(run, 'plan')['id']}/json-output")
    assert summarize_plan(rendered)["has_changes"] is False


def test_quickstart_demo(tmp_path: Path) -> None:
    """The README's first command ends here: a real plan and apply through a separate agent process."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outpost",
            "demo",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "demo"),
            "--example",
            str(EXAMPLES / "hello"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for raw in proc.stdout:
            lines.append(raw.decode())
            if "Press Ctrl-C" in lines[-1]:
                break
        text = "".join(lines)
        assert "greeting = 'Hello from an Outpost agent'" in text, text
        assert "Apply complete! Resources: 1 added" in text
        assert httpx.get(f"http://127.0.0.1:{port}/api/v2/ping").status_code == 204  # left running
        assert f"web UI: http://127.0.0.1:{port}/app/" in text
        assert httpx.get(f"http://127.0.0.1:{port}/app/sign-in").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
