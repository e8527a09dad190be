"""Sensitive variables: write-only in the API, encrypted at rest with the server's key, and masked in
run logs before they leave the agent, with real terraform (a plan that shows the value, a local-exec
that prints it whole and in pieces)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from outpost.api_client import OutpostAPI
from tests.conftest import CONFIGS
from tests.support import databases
from tests.support.processes import Server

pytestmark = pytest.mark.e2e

SECRET = "hunter2-Very$ecret-value"


def test_sensitive_variables(server: Server, api: OutpostAPI, org: tuple[str, str]) -> None:
    ws = api.create_workspace(org[0], "secrets", auto_apply=True)["id"]
    created = api.add_variable(ws, "password", SECRET, sensitive=True)
    assert created["attributes"]["value"] is None and created["attributes"]["sensitive"] is True
    listed = api.request("GET", f"/workspaces/{ws}/vars")["data"]
    assert [v["attributes"]["value"] for v in listed] == [None]
    patched = api.request(
        "PATCH",
        f"/workspaces/{ws}/vars/{created['id']}",
        {"data": {"type": "vars", "attributes": {"description": "db"}}},
    )["data"]
    assert patched["attributes"]["value"] is None
    # Sensitive stays sensitive: it cannot be turned back into a readable value.
    unset = {"data": {"type": "vars", "attributes": {"sensitive": False}}}
    assert api.request("PATCH", f"/workspaces/{ws}/vars/{created['id']}", unset)["data"]["attributes"]["sensitive"]

    # At rest: no plain value in the database, only a token the server's key opens.
    ((value, ciphertext),) = databases.query(
        server.db_url, "SELECT value, value_ciphertext FROM variables WHERE id = :id", id=created["id"]
    )
    assert value == "" and isinstance(ciphertext, str) and SECRET not in ciphertext
    key = (server.data_dir / "encryption.key").read_text().strip()
    assert Fernet(key.encode()).decrypt(ciphertext.encode()).decode() == SECRET
    if not databases.is_postgres():  # the whole file, free pages and journal included
        assert SECRET.encode() not in (server.data_dir / "outpost.db").read_bytes()

    # In logs: terraform gets the value, the log never shows it.
    cv = api.upload_configuration(ws, CONFIGS / "secret_echo")
    run = api.wait_for_run(api.create_run(ws, cv)["id"], {"applied", "errored"})
    assert run["attributes"]["status"] == "applied", api.read_log(run, "plan") + api.read_log(run, "apply")
    plan_log, apply_log = api.read_log(run, "plan"), api.read_log(run, "apply")
    for text in (plan_log, apply_log):
        assert SECRET not in text
        assert "***" in text
    assert "from env: ***" in apply_log and "direct: ***" in apply_log
    assert apply_log.count("x***") == 8  # at the end of each long line
    # The value did reach terraform (what it stored in state is the value, not the mask).
    state = api.request("GET", f"/workspaces/{ws}/current-state-version")["data"]["attributes"]
    import httpx

    raw = httpx.get(state["hosted-state-download-url"]).text
    assert SECRET in raw


def test_a_server_with_another_key_refuses_to_start(server: Server, tmp_path: Path, tools_dir: Path) -> None:
    from tests.support.processes import start_server

    data = tmp_path / "srv"
    first = start_server(data, tools_dir, "--no-builtin-agent")
    first.proc.stop()
    other = Fernet.generate_key().decode()
    from tests.support.processes import OUTPOST, Proc, free_port

    proc = Proc(
        [
            *OUTPOST,
            "server",
            "--port",
            str(free_port()),
            "--data-dir",
            str(data),
            "--database-url",
            first.db_url,  # the same database, another key
            "--no-builtin-agent",
            "--encryption-key",
            other,
        ],
        tmp_path / "second.log",
    ).start()
    try:
        assert proc.wait(60) != 0
    finally:
        proc.stop()
    assert "encryption key does not match" in proc.output()
