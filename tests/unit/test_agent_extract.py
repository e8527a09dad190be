"""The agent's own defence: it re-checks archives (it does not trust the server to have) and extracts
with tarfile's "data" filter; nothing lands outside the run's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outpost.agent.job import StepFailed, _extract
from outpost.store import archives
from tests.support.archives import MAIN_TF, file, gzip_bomb, hostile, tar_gz

HOSTILE = hostile()


def _snapshot(root: Path) -> set[str]:
    return {os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_writes_nothing_outside(tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "job" / "work" / "config"
    dest.mkdir(parents=True)
    before = _snapshot(tmp_path)
    with pytest.raises(StepFailed) as caught:
        _extract(HOSTILE[kind], dest)
    assert "refused" in str(caught.value)
    assert _snapshot(tmp_path) == before  # not even the harmless main.tf: all or nothing
    assert not Path("/tmp/outpost-escaped.tf").exists()


def test_gzip_bomb_is_refused_while_streaming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 8 * 1024 * 1024)
    bomb = gzip_bomb(16 * 1024 * 1024, member=4 * 1024 * 1024)
    assert len(bomb) < 64 * 1024
    with pytest.raises(StepFailed) as caught:
        _extract(bomb, tmp_path)
    assert "more than 8388608 bytes" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_good_archive_is_extracted(tmp_path: Path) -> None:
    _extract(tar_gz(file("main.tf"), file("modules/a/main.tf")), tmp_path)
    assert (tmp_path / "modules" / "a" / "main.tf").read_bytes() == MAIN_TF
