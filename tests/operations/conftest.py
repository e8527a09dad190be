"""Fixtures for the operations tests: release signing keys and a releases directory, made once per worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.releases import SigningKey, make_key, publish

GOOD, TAMPERED_ARCHIVE, OTHER_SIGNER, TAMPERED_SUMS = "1.0.3", "1.0.4", "1.0.5", "1.0.6"


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    key = make_key(tmp_path_factory.mktemp("keys") / "release", "Outpost Test Releases")
    yield key
    key.close()


@pytest.fixture(scope="session")
def intruder_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    key = make_key(tmp_path_factory.mktemp("keys") / "intruder", "Someone Else")
    yield key
    key.close()


@pytest.fixture(scope="session")
def releases_dir(
    tmp_path_factory: pytest.TempPathFactory, tools_dir: Path, release_key: SigningKey, intruder_key: SigningKey
) -> Path:
    """terraform/<v>/ for: 1.0.3 genuine; 1.0.4 a swapped archive; 1.0.5 signed by another key; 1.0.6
    SHA256SUMS changed after signing. All of them hold the real terraform 1.0.3 binary."""
    root = tmp_path_factory.mktemp("releases")
    binary = tools_dir / "terraform" / "1.0.3" / "terraform"
    genuine = publish(root, GOOD, binary, release_key)
    publish(root, TAMPERED_ARCHIVE, binary, release_key, archive=genuine, tamper_archive=True)
    publish(root, OTHER_SIGNER, binary, intruder_key, archive=genuine)
    publish(root, TAMPERED_SUMS, binary, release_key, archive=genuine, tamper_sums=True)
    return root
