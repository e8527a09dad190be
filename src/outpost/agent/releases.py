"""Terraform binaries by version: the operator's tools directory, the agent's cache, or a verified download.

A download is used only after two checks, both before anything runs: the detached OpenPGP signature of
`terraform_{v}_SHA256SUMS` is good for the configured release key (openpgp.py), and the archive's
SHA-256 matches its line in that file. The layout is the vendor's:

    {releases_url}/terraform/{v}/terraform_{v}_linux_amd64.zip
    {releases_url}/terraform/{v}/terraform_{v}_SHA256SUMS
    {releases_url}/terraform/{v}/terraform_{v}_SHA256SUMS.sig

and `outpost server --releases-dir` serves the same layout for agents that reach nothing else. A verified
binary is unpacked under a temporary name and renamed into `<cache>/terraform/{v}/terraform`, under a
per-version file lock: concurrent jobs (of this agent or of others sharing the cache) download it once,
and nobody ever sees a half-written binary.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import platform
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from outpost.agent import metrics, network
from outpost.agent.client import Client
from outpost.agent.locks import file_lock
from outpost.agent.openpgp import SignatureError, verify_detached
from outpost.config import AgentConfig
from outpost.errors import AgentError
from outpost.tools.install import installed_versions, version_key

log = logging.getLogger("outpost.agent.releases")

MAX_ARCHIVE = 512 * 1024 * 1024
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ReleaseError(AgentError):
    """Terraform could not be provided; the message is for the run log."""


def platform_name() -> str:
    return f"linux_{_ARCH.get(platform.machine().lower(), platform.machine().lower())}"


def cache_dir(config: AgentConfig) -> Path:
    return config.cache_root / "terraform"


def _installed(directory: Path | None, version: str) -> Path | None:
    if directory is None or version not in installed_versions(directory):
        return None
    return directory / version / "terraform"


def _latest(config: AgentConfig) -> Path:
    found = [(d, v) for d in (config.terraform_dir, cache_dir(config)) if d for v in installed_versions(d)]
    if not found:
        raise ReleaseError(
            "The workspace asks for the latest Terraform, and none is installed or cached: "
            "pin a terraform-version on the workspace, or install the tools with `outpost tools install`."
        )
    directory, version = max(found, key=lambda item: version_key(item[1]))
    return directory / version / "terraform"


async def terraform_binary(
    config: AgentConfig,
    version: str,
    say: Callable[[str], None],
    client: Client,
    give_up: Callable[[], bool] | None = None,
) -> Path:
    """The terraform binary for `version`: installed, cached, or downloaded and verified now.
    While another job downloads it, this one waits, unless `give_up` says it was canceled meanwhile."""
    if version == "latest":
        return _latest(config)
    if not _VERSION.match(version):
        raise ReleaseError(f"{version!r} is not a Terraform version like 1.0.3.")
    found = _installed(config.terraform_dir, version) or _installed(cache_dir(config), version)
    if found is not None:
        return found
    if config.releases_key is None:
        where = f" in {config.terraform_dir}" if config.terraform_dir else ""
        raise ReleaseError(
            f"Terraform {version} is not installed{where} and downloads are off: start the agent with "
            f"--releases-key (the OpenPGP public key that signs the releases at {config.releases_url}) "
            "to download and verify it, or install it in the --terraform-dir."
        )
    cache = cache_dir(config)
    async with file_lock(
        cache / f".{version}.lock",
        on_wait=lambda: say(f"Waiting for another job that is downloading Terraform {version}..."),
        give_up=give_up,
    ):
        found = _installed(cache, version)  # the job we waited for may have cached it
        if found is not None:
            return found
        return await Downloader(config, client, say).install(version, cache)


class Downloader:
    """One version's download: signature first, then the archive against the signed checksum."""

    def __init__(self, config: AgentConfig, client: Client, say: Callable[[str], None]) -> None:
        assert config.releases_key is not None
        self.key = config.releases_key
        self.config = config
        self.client = client
        self.say = say
        self.base = config.releases_url.rstrip("/")

    def _same_origin(self) -> bool:
        mine, theirs = httpx.URL(str(self.client.http.base_url)), httpx.URL(self.base)
        return (mine.scheme, mine.host, mine.port) == (theirs.scheme, theirs.host, theirs.port)

    async def install(self, version: str, cache: Path) -> Path:
        self.say(f"Downloading Terraform {version} ({platform_name()}) from {self.base}/terraform/{version}/")
        work = Path(tempfile.mkdtemp(prefix=f".download-{version}-", dir=cache))
        try:
            if self._same_origin():
                # The control plane's mirror: the agent's own client (its TLS trust, proxy or socket)
                # and its session credential, which is never sent anywhere else.
                headers = {"Authorization": f"Bearer {self.client.session_token}"}
                staged = await self._download(self.client.http, headers, version, work)
            else:
                options = network.http_options(self.config, self.base)
                async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=15.0), **options) as http:
                    staged = await self._download(http, {}, version, work)
            target = cache / version
            if target.exists():  # a leftover without a usable binary (we hold the lock: nobody else writes it)
                shutil.rmtree(target)
            os.rename(staged, target)
            metrics.DOWNLOADS.labels("verified").inc()
            return target / "terraform"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _download(self, http: httpx.AsyncClient, headers: dict[str, str], version: str, work: Path) -> Path:
        folder = f"{self.base}/terraform/{version}"
        sums_name = f"terraform_{version}_SHA256SUMS"
        zip_name = f"terraform_{version}_{platform_name()}.zip"
        sums, sig, archive = work / sums_name, work / f"{sums_name}.sig", work / zip_name
        await _fetch(http, headers, f"{folder}/{sums_name}", sums, 1024 * 1024)
        await _fetch(http, headers, f"{folder}/{sums_name}.sig", sig, 64 * 1024)
        try:
            fingerprint = await verify_detached(self.key, sig, sums)
        except SignatureError as exc:
            raise ReleaseError(
                f"Refusing Terraform {version}: the signature of {sums_name} is not valid for the release key "
                f"{self.key}: {exc}."
            ) from None
        expected = _expected_sum(sums.read_text(errors="replace"), zip_name)
        if expected is None:
            raise ReleaseError(f"Refusing Terraform {version}: the signed {sums_name} lists no {zip_name}.")
        actual = await _fetch(http, headers, f"{folder}/{zip_name}", archive, MAX_ARCHIVE)
        if not hmac.compare_digest(actual, expected):
            raise ReleaseError(
                f"Refusing Terraform {version}: the SHA-256 of {zip_name} is {actual}, but the signed "
                f"{sums_name} says {expected}. The archive is corrupt or was tampered with."
            )
        self.say(f"Verified {zip_name}: SHA-256 {actual}; {sums_name} signed by {fingerprint}")
        log.info("terraform %s downloaded and verified (key %s)", version, fingerprint)
        staged = work / version
        _unpack(archive, staged)
        return staged


async def _fetch(http: httpx.AsyncClient, headers: dict[str, str], url: str, dest: Path, limit: int) -> str:
    """Stream `url` into `dest`; return its SHA-256 (hex)."""
    digest = hashlib.sha256()
    size = 0
    try:
        async with http.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                raise ReleaseError(f"Could not download {url}: HTTP {resp.status_code}.")
            with dest.open("wb") as out:
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ReleaseError(f"Could not download {url}: it is larger than {limit} bytes.")
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise ReleaseError(f"Could not download {url}: {type(exc).__name__}: {exc}") from None
    return digest.hexdigest()


def _expected_sum(sums: str, name: str) -> str | None:
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
    return None


def _unpack(archive: Path, dest: Path) -> None:
    """Only the `terraform` member, written by us (no paths, no modes taken from the archive)."""
    dest.mkdir()
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open("terraform") as member:
            with (dest / "terraform").open("wb") as out:
                shutil.copyfileobj(member, out)
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        raise ReleaseError(f"The verified archive {archive.name} holds no usable terraform binary: {exc}") from None
    (dest / "terraform").chmod(0o755)
