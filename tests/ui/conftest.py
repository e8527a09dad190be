"""One real browser per test session: Debian's Chromium driven by Playwright (never a downloaded build)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.support.processes import OUTPOST, Server, clean_env

ROOT = Path(__file__).parent.parent.parent
# This machine (and CI) has no internet: nothing in the browser may try to reach it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    found = os.environ.get("OUTPOST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail("Debian's chromium is missing: run ./scripts/system-packages (apt-get install chromium).")
    return found


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread, which
# other tests' asyncio.run() would trip over. The browser tests share one module and one xdist group.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def email_for(org: str) -> str:
    return f"owner-{org}@example.com"


@pytest.fixture
def ui_org(server: Server) -> tuple[str, str]:
    """A fresh organization and its owner, made with the real `outpost admin bootstrap` (no asyncio here)."""
    name = f"ui-{uuid.uuid4().hex[:10]}"
    done = subprocess.run(
        [
            *OUTPOST,
            "admin",
            "bootstrap",
            "--data-dir",
            str(server.data_dir),
            "--database-url",
            server.db_url,
            "--org",
            name,
            "--email",
            email_for(name),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return name, done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of every page the tests visit (OUTPOST_UI_ARTIFACTS overrides the folder)."""
    path = Path(os.environ.get("OUTPOST_UI_ARTIFACTS", ROOT / "artifacts" / "ui"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class Shots:
    def __init__(self, folder: Path, test: str) -> None:
        self.folder = folder
        self.prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", test)
        self.count = 0

    def __call__(self, page: Page, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.prefix}-{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(artifacts: Path, request: pytest.FixtureRequest) -> Shots:
    return Shots(artifacts, request.node.name)
