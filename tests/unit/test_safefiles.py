"""Reading what a run left, and writing into its directory, without following what it planted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outpost.agent.safefiles import UnsafeFile, read_beneath, write_new


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work" / "config").mkdir(parents=True)
    (tmp_path / "secret").write_text("host secret")
    return tmp_path / "work"


def test_plain_files_are_read(work: Path) -> None:
    (work / "config" / "terraform.tfstate").write_text("{}")
    assert read_beneath(work, Path("config/terraform.tfstate"), 100) == b"{}"
    assert read_beneath(work, Path("config/missing"), 100) is None


def test_a_link_in_place_of_the_file_is_refused(work: Path) -> None:
    os.symlink(work.parent / "secret", work / "config" / "terraform.tfstate")
    with pytest.raises(UnsafeFile):
        read_beneath(work, Path("config/terraform.tfstate"), 100)


def test_a_link_in_place_of_a_directory_is_refused(work: Path) -> None:
    (work / "config").rename(work / "moved")
    os.symlink(work.parent, work / "config")  # config -> the directory holding "secret"
    with pytest.raises(UnsafeFile):
        read_beneath(work, Path("config/secret"), 100)


def test_special_files_and_big_files_are_refused(work: Path) -> None:
    os.mkfifo(work / "config" / "fifo")
    with pytest.raises(UnsafeFile):
        read_beneath(work, Path("config/fifo"), 100)  # not a hang
    (work / "config" / "big").write_bytes(b"x" * 101)
    with pytest.raises(UnsafeFile):
        read_beneath(work, Path("config/big"), 100)
    with pytest.raises(UnsafeFile):
        read_beneath(work, Path("../secret"), 100)


def test_write_new_creates_but_never_through_a_link(work: Path) -> None:
    write_new(work, Path("plan.tfplan"), b"plan")
    assert (work / "plan.tfplan").read_bytes() == b"plan"
    os.symlink(work.parent / "secret", work / "planted")
    with pytest.raises(UnsafeFile):
        write_new(work, Path("planted"), b"overwritten?")
    assert (work.parent / "secret").read_text() == "host secret"
