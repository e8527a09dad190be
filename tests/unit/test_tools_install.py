"""Installing the real Terraform binaries from the `terraform` extra's packages, and picking a version."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from outpost.errors import ConfigError
from outpost.tools import install
from outpost.tools.install import ToolsLayout, find_terraform, install_tools, installed_versions, layout

PROVIDER = Path("providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")
BINARIES = [Path("terraform/1.0.3/terraform"), Path("terraform/0.11.11/terraform"), PROVIDER]


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> ToolsLayout:
    # One install for the module: a copy (when hard links are impossible) is some 170 MB.
    return install_tools(tmp_path_factory.mktemp("tools"))


def _version_output(binary: Path) -> str:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}
    done = subprocess.run([binary, "version"], capture_output=True, text=True, env=env, timeout=60, check=True)
    return done.stdout


def test_layout_only_computes_paths(tmp_path: Path) -> None:
    tools = layout(tmp_path / "tools")
    assert tools == ToolsLayout(
        root=tmp_path / "tools",
        terraform_dir=tmp_path / "tools" / "terraform",
        provider_mirror=tmp_path / "tools" / "providers",
    )
    assert not (tmp_path / "tools").exists()


def test_install_lays_out_executable_elf_binaries(tools: ToolsLayout) -> None:
    assert tools == layout(tools.root)
    for relative in BINARIES:
        binary = tools.root / relative
        assert binary.is_file(), relative
        assert binary.stat().st_mode & 0o777 == 0o755, relative
        assert os.access(binary, os.X_OK), relative
        assert binary.read_bytes()[:4] == b"\x7fELF", relative
    assert (tools.provider_mirror / PROVIDER.relative_to("providers")).is_file()


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.0.3", "Terraform v1.0.3"), ("0.11.11", "Terraform v0.11.11")],
)
def test_installed_terraform_reports_its_version(tools: ToolsLayout, version: str, expected: str) -> None:
    out = _version_output(tools.terraform_dir / version / "terraform")
    assert out.splitlines()[0] == expected


def test_installed_versions_and_latest(tools: ToolsLayout) -> None:
    assert installed_versions(tools.terraform_dir) == ["0.11.11", "1.0.3"]
    assert find_terraform(tools.terraform_dir, "latest") == tools.terraform_dir / "1.0.3" / "terraform"
    assert find_terraform(tools.terraform_dir, "0.11.11") == tools.terraform_dir / "0.11.11" / "terraform"
    assert _version_output(find_terraform(tools.terraform_dir, "latest")).startswith("Terraform v1.0.3")


def test_second_install_copies_nothing(tools: ToolsLayout, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected copy {args}")

    before = {relative: (tools.root / relative).stat().st_size for relative in BINARIES}
    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(shutil, "copyfile", refuse)
    assert install_tools(tools.root) == tools
    assert {relative: (tools.root / relative).stat().st_size for relative in BINARIES} == before


def test_install_replaces_a_file_of_the_wrong_size_by_copying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "terraform" / "1.0.3" / "terraform"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"truncated")

    def no_hard_links(*args: object, **kwargs: object) -> None:
        raise OSError("Invalid cross-device link")

    # The fallback when the tools directory is on another filesystem than the virtualenv.
    monkeypatch.setattr(os, "link", no_hard_links)
    tools = install_tools(tmp_path)
    assert broken.stat().st_size > 10_000_000
    assert broken.read_bytes()[:4] == b"\x7fELF"
    assert broken.stat().st_nlink == 1
    assert sorted(p.name for p in broken.parent.iterdir()) == ["terraform"]  # no partial file left behind
    assert installed_versions(tools.terraform_dir) == ["0.11.11", "1.0.3"]


def test_missing_package_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "TERRAFORM_DISTRIBUTIONS", ("outpost-no-such-terraform-package",))
    with pytest.raises(ConfigError) as caught:
        install_tools(tmp_path)
    assert "outpost-no-such-terraform-package" in caught.value.detail
    assert "pip install 'outpost[terraform]'" in caught.value.detail


def test_missing_version_names_version_directory_and_what_is_installed(tools: ToolsLayout) -> None:
    with pytest.raises(ConfigError) as caught:
        find_terraform(tools.terraform_dir, "1.5.7")
    detail = caught.value.detail
    assert "1.5.7" in detail
    assert str(tools.terraform_dir) in detail
    assert "0.11.11, 1.0.3" in detail


def _fake_terraform(terraform_dir: Path, version: str, mode: int = 0o755) -> None:
    binary = terraform_dir / version / "terraform"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(mode)


def test_versions_sort_numerically_and_skip_what_cannot_run(tmp_path: Path) -> None:
    for version in ["0.12.31", "0.9.0", "1.0.3", "0.11.11", "1.10.0"]:
        _fake_terraform(tmp_path, version)
    _fake_terraform(tmp_path, "2.0.0", mode=0o644)  # not executable
    _fake_terraform(tmp_path, "scratch")  # not a version
    (tmp_path / "3.0.0").mkdir()  # no binary
    assert installed_versions(tmp_path) == ["0.9.0", "0.11.11", "0.12.31", "1.0.3", "1.10.0"]
    assert find_terraform(tmp_path, "latest") == tmp_path / "1.10.0" / "terraform"
    with pytest.raises(ConfigError, match=r"Terraform 2\.0\.0 is not installed"):
        find_terraform(tmp_path, "2.0.0")


def test_path_like_versions_are_refused(tmp_path: Path) -> None:
    # An executable `terraform` one level up: joining ".." naively would find it.
    _fake_terraform(tmp_path, ".")
    (tmp_path / "versions").mkdir()
    with pytest.raises(ConfigError):
        find_terraform(tmp_path / "versions", "..")


def test_nothing_installed(tmp_path: Path) -> None:
    assert installed_versions(tmp_path / "absent") == []
    with pytest.raises(ConfigError) as caught:
        find_terraform(tmp_path / "absent", "latest")
    assert "No Terraform is installed" in caught.value.detail
    with pytest.raises(ConfigError) as caught:
        find_terraform(tmp_path / "absent", "1.0.3")
    assert "installed: none" in caught.value.detail
