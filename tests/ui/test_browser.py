"""The web UI in a real browser, against a real server, a real `outpost agent` and real terraform.

One operator's journey: sign in, create a pool and a token (its secret shown once), start an agent with
it and watch it appear idle, create a workspace with variables, queue a run by uploading a
configuration, watch the agent go busy and the plan log stream, confirm, watch the apply stream and
finish, read the outputs (the sensitive one hidden), then revoke the token and see the agent exit.
Every page is screenshotted into the artifacts folder, at laptop and phone widths.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from outpost.api_client import pack
from tests.conftest import CONFIGS
from tests.support.processes import OUTPOST, Proc, Server, clean_env
from tests.ui.conftest import Shots, email_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

PASSWORD = "a long browser password"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 900}

# Accessibility basics every page must meet: labelled fields, named buttons, one h1, a language, and no
# sideways scrolling of the page itself (wide tables scroll inside their own box).
_BASICS = """() => {
  const problems = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!el.labels.length && !el.getAttribute('aria-label')) problems.push('unlabelled ' + (el.name || el.id));
  }
  for (const b of document.querySelectorAll('button')) {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('unnamed button');
  }
  if (document.querySelectorAll('h1').length !== 1) problems.push('h1 count ' + document.querySelectorAll('h1').length);
  if (!document.documentElement.lang) problems.push('no lang');
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push('page wider than the window');
  return problems;
}"""


def check(page: Page, shot: Shots, name: str) -> None:
    assert page.evaluate(_BASICS) == [], f"{name}: {page.url}"
    shot(page, name)
    page.set_viewport_size(PHONE)
    assert page.evaluate(_BASICS) == [], f"{name} (phone width): {page.url}"
    shot(page, f"{name}-phone")
    page.set_viewport_size(LAPTOP)


def set_password(server: Server, email: str) -> None:
    done = subprocess.run(
        [
            *OUTPOST,
            "admin",
            "set-password",
            "--data-dir",
            str(server.data_dir),
            "--database-url",
            server.db_url,
            "--email",
            email,
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
        text=True,
        env=clean_env(),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr


def mark_page(page: Page) -> None:
    """A marker that a reload or navigation would erase: live updates must arrive without one."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def test_operator_journey(  # type: ignore[no-untyped-def]
    server: Server, ui_org: tuple[str, str], page: Page, shot: Shots, start, tmp_path: Path
) -> None:
    org_name = ui_org[0]
    email = email_for(org_name)
    set_password(server, email)

    # --- sign in (a wrong password first: a clear, focused error) --------------------------------
    page.goto(f"{server.url}/app/")
    expect(page).to_have_url(f"{server.url}/app/sign-in?next=/app/")
    check(page, shot, "sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("email or password is not right")
    expect(alert).to_be_focused()
    shot(page, "sign-in-error")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{server.url}/app/{org_name}/workspaces")
    expect(page.get_by_text("No workspaces yet.")).to_be_visible()
    check(page, shot, "workspaces-empty")

    # --- a pool and a token, whose secret is shown once ------------------------------------------
    nav(page, "Agents").click()
    expect(page.get_by_text("No agent pools yet.")).to_be_visible()
    check(page, shot, "pools-empty")
    page.get_by_label("Name").fill("datacenter-1")
    page.get_by_role("button", name="Create pool").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("datacenter-1")
    expect(page.get_by_text("No agents have registered yet.")).to_be_visible()
    pool_url = page.url.split("?")[0]
    page.get_by_label("Description").fill("rack 4 hypervisors")
    page.get_by_role("button", name="Create token").click()
    secret_box = page.locator("#token-secret")
    expect(secret_box).to_be_visible()
    expect(page.locator("#new-token")).to_be_focused()
    secret = secret_box.input_value()
    assert secret.startswith("opa_")
    command = page.locator("#agent-command").inner_text()
    assert f"OUTPOST_AGENT_TOKEN={secret} outpost agent --address {server.url}" in command
    expect(page.get_by_role("button", name="Copy token")).to_be_visible()
    check(page, shot, "token-created")
    page.reload()
    expect(page.locator("#token-secret")).to_have_count(0)
    expect(page.get_by_text("its secret was shown once")).to_be_visible()
    assert secret not in page.content()
    expect(page.locator('tr[data-token="rack 4 hypervisors"]')).to_be_visible()

    # --- an agent started with it appears, idle, without a reload --------------------------------
    page.goto(pool_url)
    mark_page(page)
    agent: Proc = start(secret, name="ui-agent")
    expect(page.locator('tr[data-agent="ui-agent"] .badge')).to_have_text("idle", timeout=60_000)
    assert same_document(page)
    expect(page.locator('tr[data-agent="ui-agent"]')).to_contain_text("127.0.0.1")
    check(page, shot, "pool-agent-idle")
    # Record every status the live list shows the agent in, from now on.
    page.evaluate(
        """() => {
          window.__seen = [];
          const note = () => document.querySelectorAll('tr[data-agent="ui-agent"]')
            .forEach(r => window.__seen.push(r.dataset.status));
          new MutationObserver(note).observe(document.getElementById('agents'), {childList: true, subtree: true});
        }"""
    )

    # --- a workspace on that pool, with variables (one sensitive) --------------------------------
    work = page.context.new_page()
    work.goto(f"{server.url}/app/{org_name}/workspaces")
    work.get_by_label("Name", exact=True).fill("ui-run")
    work.get_by_label("Agent", exact=True).check()
    work.get_by_label("Agent pool").select_option(label="datacenter-1")
    work.get_by_role("button", name="Create workspace").click()
    expect(work.get_by_role("heading", level=1)).to_have_text("ui-run")
    expect(work.get_by_text("No runs yet.")).to_be_visible()
    work.get_by_role("link", name="Settings").click()
    expect(work.get_by_label("Agent", exact=True)).to_be_checked()
    check(work, shot, "workspace-settings")
    work.get_by_role("link", name="Variables").click()
    for key, value, sensitive in (("ticks", "4", False), ("word", "swordfish", True)):
        work.get_by_label("Key").fill(key)
        work.get_by_label("Value", exact=True).fill(value)
        if sensitive:
            work.get_by_label("Sensitive (write-only: never shown again)").check()
        work.get_by_role("button", name="Add variable").click()
        expect(work.get_by_role("status")).to_have_text("Variable added.")
    expect(work.locator('tr[data-variable="word"]')).to_contain_text("Sensitive, write-only")
    assert "swordfish" not in work.content()
    check(work, shot, "variables")

    # --- queue a run by uploading the configuration ----------------------------------------------
    archive = tmp_path / "config.tar.gz"
    archive.write_bytes(pack(CONFIGS / "ui"))
    work.get_by_role("link", name="Runs").click()
    expect(work.get_by_label("The latest uploaded configuration")).to_be_disabled()
    work.get_by_label("Message").fill("from the browser")
    work.get_by_label("Configuration archive").set_input_files(str(archive))
    work.get_by_role("button", name="Queue run").click()
    expect(work).to_have_url(re.compile(r"/workspaces/ui-run/runs/run-"))
    mark_page(work)
    plan_log = work.locator("#plan-log")
    expect(plan_log).to_contain_text("Terraform will perform the following actions", timeout=120_000)
    expect(work.locator("#run-status")).to_have_attribute("data-status", "planned", timeout=120_000)
    expect(plan_log).to_contain_text("Plan: 1 to add, 0 to change, 0 to destroy.")
    assert int(plan_log.get_attribute("data-events") or 0) >= 1, "the plan log did not stream to the page"
    assert same_document(work)
    expect(work.locator("#plan-counts")).to_have_text("1 to add, 0 to change, 0 to destroy")
    expect(work.locator("dd").filter(has_text="ui-agent")).to_have_count(1)  # planned by our agent
    expect(work.get_by_role("button", name="Discard run")).to_be_visible()
    expect(work.get_by_role("button", name="Cancel run")).to_have_count(0)  # not allowed when planned
    check(work, shot, "run-planned")

    # --- confirm: the apply streams while the agent is busy, then finishes -----------------------
    work.get_by_role("button", name="Confirm & apply").click()
    expect(work.get_by_role("status")).to_contain_text("Apply confirmed")
    mark_page(work)
    apply_log = work.locator("#apply-log")
    expect(apply_log).to_contain_text("tick 1", timeout=120_000)
    expect(work.locator("#run-status")).to_have_attribute("data-status", "applying")
    expect(work.get_by_role("button", name="Confirm & apply")).to_have_count(0)
    expect(work.get_by_role("button", name="Cancel run")).to_be_visible()
    expect(page.locator('tr[data-agent="ui-agent"] .badge')).to_have_text("busy")
    assert same_document(page)
    shot(page, "pool-agent-busy")
    expect(work.locator("#run-status")).to_have_attribute("data-status", "applied", timeout=120_000)
    expect(apply_log).to_contain_text("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
    assert "tick 4" in apply_log.inner_text()
    assert int(apply_log.get_attribute("data-events") or 0) >= 2, "the apply log did not stream in pieces"
    assert same_document(work)
    expect(work.locator("#apply-counts")).to_have_text("1 added, 0 changed, 0 destroyed")
    expect(work.get_by_role("button", name="Cancel run")).to_have_count(0)
    assert "swordfish" not in work.content()
    check(work, shot, "run-applied")
    expect(page.locator('tr[data-agent="ui-agent"] .badge')).to_have_text("idle")
    assert "busy" in page.evaluate("window.__seen")

    # --- state: versions and outputs, the sensitive one hidden -----------------------------------
    work.get_by_role("link", name="See the state and its outputs").click()
    expect(work.locator('tr[data-output="ticks"]')).to_contain_text("4")
    expect(work.locator('tr[data-output="word"]')).to_contain_text("Sensitive, hidden")
    assert "swordfish" not in work.content()
    expect(work.get_by_text("current", exact=True)).to_be_visible()
    check(work, shot, "state")
    nav(work, "Workspaces").click()
    expect(work.locator('tr[data-workspace="ui-run"] .badge')).to_have_text("applied")
    check(work, shot, "workspaces")
    nav(work, "Agents").click()
    expect(work.locator("td[data-testid=agent-count]")).to_have_text("1")
    check(work, shot, "pools")

    # --- revoke the token (typing its description): the agent exits -----------------------------
    row = page.locator('tr[data-token="rack 4 hypervisors"]')
    row.get_by_text("Revoke…").click()
    revoke = row.get_by_role("button", name="Revoke token")
    expect(revoke).to_be_disabled()
    row.get_by_label("to confirm").fill("rack 4")
    expect(revoke).to_be_disabled()
    row.get_by_label("to confirm").fill("rack 4 hypervisors")
    revoke.click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    expect(page.locator('tr[data-agent="ui-agent"] .badge')).to_have_text("exited")
    expect(page.locator('tr[data-agent="ui-agent"]')).to_contain_text("was revoked")
    assert agent.wait(60) == 4, agent.output()
    check(page, shot, "pool-agent-exited")

    # --- sign out: the session is gone --------------------------------------------------------------
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{server.url}/app/{org_name}/pools")
    expect(page).to_have_url(f"{server.url}/app/sign-in?next=/app/{org_name}/pools")
