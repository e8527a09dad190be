"""pytfe 1.5.0, unchanged, drives Outpost through a whole agent-mode run.

Every call goes through pytfe's own services and models (pydantic, strict enums), so a shape it cannot
parse fails here. The only request made by hand is the GET of `log-read-url`: pytfe's `logs()` methods
are placeholders that return "".
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytfe import TFEClient, TFEConfig
from pytfe.errors import NotFound
from pytfe.models import (
    AgentPoolCreateOptions,
    AgentTokenCreateOptions,
    ConfigurationVersionCreateOptions,
    ExecutionMode,
    OrganizationCreateOptions,
    RunApplyOptions,
    RunCreateOptions,
    RunStatus,
    Workspace,
    WorkspaceCreateOptions,
)

from tests.conftest import EXAMPLES
from tests.support.processes import Server, wait_until

pytestmark = pytest.mark.integration

AGENT_LINE = re.compile(r"on linux_amd64 \(Outpost agent (\S+) \((agent-\w+)\)\)")


@pytest.fixture
def tfe(server: Server, org: tuple[str, str]) -> Iterator[TFEClient]:
    # Explicit config: pytfe reads TFE_* defaults at import time, and this process's environment is not ours.
    client = TFEClient(
        TFEConfig(address=server.url, token=org[1], verify_tls=True, ca_bundle=None, timeout=30, max_retries=2)
    )
    yield client
    client.close()


def _wait_status(tfe: TFEClient, run_id: str, wanted: set[RunStatus], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = tfe.runs.read(run_id)
        if run.status in wanted:
            return run
        assert run.status not in (RunStatus.Run_Errored, RunStatus.Run_Canceled), run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is {run.status}, not {wanted}")
        time.sleep(0.2)


def _log(url: str) -> str:
    """The whole log behind a log-read URL: no Authorization (it is a capability), framing removed."""
    raw = httpx.get(url, timeout=30).content
    assert raw[:1] == b"\x02" and raw[-1:] == b"\x03", raw[-200:]
    return raw[1:-1].decode()


def test_pytfe_drives_an_agent_run(tfe: TFEClient, start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A user token can create organizations; the caller becomes an owner of each.
    name = f"pytfe-{uuid.uuid4().hex[:10]}"
    org = tfe.organizations.create(OrganizationCreateOptions(name=name, email="ops@example.com"))
    assert org.name == name and org.email == "ops@example.com"
    assert tfe.organizations.read(name).name == name
    assert tfe.organizations.read_entitlements(name).operations is True

    pool = tfe.agent_pools.create(name, AgentPoolCreateOptions(name="builders", organization_scoped=True))
    assert pool.id.startswith("apool-") and pool.organization_scoped is True
    assert [p.id for p in tfe.agent_pools.list(name)] == [pool.id]

    # The secret is shown once: at creation. Listing and reading give null.
    token = tfe.agent_tokens.create(pool.id, AgentTokenCreateOptions(description="compat"))
    assert token.token and token.token.startswith("opa_")
    assert [(t.id, t.token) for t in tfe.agent_tokens.list(pool.id)] == [(token.id, None)]
    assert tfe.agent_tokens.read(token.id).token is None

    start(token.token, name="pytfe-agent")
    agents = wait_until(lambda: list(tfe.agents.list(pool.id)), 30, what="the agent to register")
    (agent,) = agents
    assert agent.name == "pytfe-agent" and agent.id.startswith("agent-")
    assert tfe.agents.read(agent.id).id == agent.id

    ws = tfe.workspaces.create(
        name,
        WorkspaceCreateOptions(name="compat", execution_mode=ExecutionMode.AGENT, agent_pool_id=pool.id),
    )
    assert ws.execution_mode == ExecutionMode.AGENT and ws.agent_pool is not None and ws.agent_pool.id == pool.id
    assert ws.vcs_repo is None  # pytfe sends "vcs-repo": {}; echoing it would make terraform refuse applies
    assert tfe.workspaces.read("compat", organization=name).id == ws.id
    assert tfe.workspaces.read_by_id(ws.id).name == "compat"
    assert [w.id for w in tfe.workspaces.list(name)] == [ws.id]

    cv = tfe.configuration_versions.create(ws.id, ConfigurationVersionCreateOptions(auto_queue_runs=False))
    assert cv.upload_url and cv.upload_url.startswith(("http://", "https://"))
    tfe.configuration_versions.upload(cv.upload_url, str(EXAMPLES / "hello"))
    assert tfe.configuration_versions.read(cv.id).status.value == "uploaded"

    # As pytfe documents it: a Workspace with just its id. pytfe dumps the model into the request without
    # JSON mode, so a workspace as read (its created-at is a datetime) cannot be serialized client-side.
    run = tfe.runs.create(
        RunCreateOptions(
            message="from pytfe",
            workspace=Workspace(id=ws.id),
            configuration_version=tfe.configuration_versions.read(cv.id),
        )
    )
    assert run.message == "from pytfe"
    run = _wait_status(tfe, run.id, {RunStatus.Run_Planned})
    assert run.has_changes and run.actions is not None and run.actions.is_confirmable
    assert run.plan is not None and run.apply is not None

    plan = tfe.plans.read(run.plan.id)
    assert plan.resource_additions == 1 and plan.log_read_url
    assert tfe.plans.logs(plan.id) == ""  # a placeholder in pytfe 1.5.0: the log is read below
    plan_log = _log(plan.log_read_url)
    assert "null_resource.hello will be created" in plan_log
    (executed_by,) = AGENT_LINE.findall(plan_log)
    assert executed_by == ("pytfe-agent", agent.id)  # the separate agent ran it, not the built-in one
    assert tfe.plans.read_json_output(plan.id)["resource_changes"][0]["address"] == "null_resource.hello"

    tfe.runs.apply(run.id, RunApplyOptions(comment="ship it"))
    run = _wait_status(tfe, run.id, {RunStatus.Run_Applied})
    apply = tfe.applies.read(run.apply.id)
    assert apply.resource_additions == 1
    apply_log = _log(apply.log_read_url)
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in apply_log
    assert AGENT_LINE.findall(apply_log) == [executed_by]

    sv = tfe.state_versions.read_current(ws.id)
    assert sv.serial >= 1 and sv.hosted_state_download_url
    assert tfe.state_versions.read(sv.id).id == sv.id
    state = tfe.state_versions.download(sv.id)
    assert b'"null_resource"' in state
    outputs = {o.name: o for o in tfe.state_versions.list_outputs(sv.id)}
    assert outputs["greeting"].value == "Hello from an Outpost agent"
    assert outputs["greeting"].type == "string" and outputs["greeting"].sensitive is False
    resource_id = outputs["resource_id"].value
    assert resource_id and resource_id in apply_log
    current = {o.name: o.value for o in tfe.state_version_outputs.read_current(ws.id)}
    assert current == {name: o.value for name, o in outputs.items()}

    # Gone means 404, which pytfe maps to NotFound.
    with pytest.raises(NotFound):
        tfe.workspaces.read("nope", organization=name)
