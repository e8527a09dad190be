"""Terraform downloads against a real HTTP server: verified, cached, shared, and refused when bad."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.agent.client import Client
from outpost.agent.releases import ReleaseError, terraform_binary
from outpost.config import AgentConfig
from tests.operations.conftest import GOOD, OTHER_SIGNER, TAMPERED_ARCHIVE, TAMPERED_SUMS
from tests.support.httpfiles import FileServer
from tests.support.releases import SigningKey, zip_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mirror(releases_dir: Path) -> Iterator[FileServer]:
    with FileServer(releases_dir) as server:
        yield server


def _config(tmp_path: Path, mirror: FileServer, key: Path | None, terraform_dir: Path | None = None) -> AgentConfig:
    return AgentConfig(
        address="http://127.0.0.1:9",  # the control plane is not involved: the mirror is elsewhere
        token="unused",
        data_dir=tmp_path / "agent",
        terraform_dir=terraform_dir,
        releases_url=mirror.url,
        releases_key=key,
    )


def _provide(config: AgentConfig, version: str) -> tuple[Path, list[str]]:
    said: list[str] = []

    async def go() -> Path:
        client = Client(config.address)
        try:
            return await terraform_binary(config, version, said.append, client)
        finally:
            await client.close()

    return asyncio.run(go()), said


def test_download_is_verified_cached_and_run(tmp_path: Path, mirror: FileServer, release_key: SigningKey) -> None:
    config = _config(tmp_path, mirror, release_key.public)
    before = mirror.count(zip_name(GOOD))
    binary, said = _provide(config, GOOD)
    assert binary == config.cache_root / "terraform" / GOOD / "terraform"
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Terraform v1.0.3")
    assert any(line.startswith("Downloading Terraform 1.0.3") for line in said)
    assert any(f"signed by {release_key.fingerprint}" in line for line in said), said
    assert mirror.count(zip_name(GOOD)) == before + 1
    # Cached: the next job uses it without asking the mirror.
    again, said = _provide(config, GOOD)
    assert again == binary and said == []
    assert mirror.count(zip_name(GOOD)) == before + 1
    assert [p.name for p in (config.cache_root / "terraform").iterdir() if p.is_dir()] == [GOOD]


def test_concurrent_agents_download_once(tmp_path: Path, mirror: FileServer, release_key: SigningKey) -> None:
    """Three processes share one cache: one downloads under the lock, the others wait and reuse it."""
    config = _config(tmp_path, mirror, release_key.public)
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from outpost.agent.client import Client
        from outpost.agent.releases import terraform_binary
        from outpost.config import AgentConfig
        config = AgentConfig(address="http://127.0.0.1:9", token="unused", data_dir=Path({str(config.data_dir)!r}),
                             releases_url={mirror.url!r}, releases_key=Path({str(release_key.public)!r}))
        async def main():
            said = []
            client = Client(config.address)
            try:
                path = await terraform_binary(config, {GOOD!r}, said.append, client)
            finally:
                await client.close()
            print(json.dumps({{"path": str(path), "said": said}}))
        asyncio.run(main())
        """
    )
    before = mirror.count(zip_name(GOOD))
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert {r["path"] for r in results} == {str(config.cache_root / "terraform" / GOOD / "terraform")}
    assert mirror.count(zip_name(GOOD)) == before + 1, "the archive was downloaded more than once"
    downloaders = [r for r in results if any(s.startswith("Downloading") for s in r["said"])]
    assert len(downloaders) == 1


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (TAMPERED_ARCHIVE, "The archive is corrupt or was tampered with"),
        (OTHER_SIGNER, "the signature was not made by the configured key"),
        (TAMPERED_SUMS, "the signature does not match the file"),
    ],
)
def test_bad_releases_are_refused_and_never_cached(
    tmp_path: Path, mirror: FileServer, release_key: SigningKey, version: str, expected: str
) -> None:
    config = _config(tmp_path, mirror, release_key.public)
    zips_before = mirror.count(zip_name(version))
    with pytest.raises(ReleaseError) as refused:
        _provide(config, version)
    message = str(refused.value)
    assert message.startswith(f"Refusing Terraform {version}:") and expected in message, message
    cache = config.cache_root / "terraform"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [], "nothing is kept"
    if version != TAMPERED_ARCHIVE:  # a bad signature is refused before the archive is even fetched
        assert mirror.count(zip_name(version)) == zips_before


def test_without_a_key_nothing_is_downloaded(tmp_path: Path, mirror: FileServer) -> None:
    seen = len(mirror.requests)
    with pytest.raises(ReleaseError, match="downloads are off: start the agent with --releases-key"):
        _provide(_config(tmp_path, mirror, None), GOOD)
    assert len(mirror.requests) == seen


def test_installed_tools_come_first(
    tmp_path: Path, mirror: FileServer, release_key: SigningKey, tools_dir: Path
) -> None:
    seen = len(mirror.requests)
    binary, said = _provide(_config(tmp_path, mirror, release_key.public, tools_dir / "terraform"), GOOD)
    assert binary == tools_dir / "terraform" / GOOD / "terraform"
    assert said == [] and len(mirror.requests) == seen


def test_a_missing_release_names_the_url(tmp_path: Path, mirror: FileServer, release_key: SigningKey) -> None:
    with pytest.raises(
        ReleaseError, match=r"Could not download .*/terraform/1\.9\.9/terraform_1\.9\.9_SHA256SUMS: HTTP 404"
    ):
        _provide(_config(tmp_path, mirror, release_key.public), "1.9.9")
