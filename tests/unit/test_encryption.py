"""The key that encrypts secrets at rest: where it comes from, rotation, and refusing the wrong key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from outpost.encryption import KEY_FILE, Encryptor, generate_key, resolve_keys
from outpost.errors import ConfigError


def test_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    keys = resolve_keys(None, None, tmp_path)
    assert resolve_keys(None, None, tmp_path) == keys
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert resolve_keys(None, None, tmp_path / "other", create=False) == []


def test_explicit_key_and_key_file(tmp_path: Path) -> None:
    key = generate_key()
    assert resolve_keys(key, None, tmp_path) == [key]
    (tmp_path / "k").write_text(f"{key}\n")
    assert resolve_keys(None, tmp_path / "k", tmp_path) == [key]
    assert not (tmp_path / KEY_FILE).exists()


@pytest.mark.parametrize("bad", ["short", "", "x" * 44])
def test_invalid_key_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_keys(bad or ",", None, tmp_path)
    assert "key" in caught.value.detail


def test_round_trip_rotation_and_tampering() -> None:
    old, new = generate_key(), generate_key()
    sealed = Encryptor([old]).encrypt("hunter2")
    assert "hunter2" not in sealed
    rotated = Encryptor([new, old])
    assert rotated.decrypt(sealed) == "hunter2"  # the old key still decrypts
    assert Encryptor([new]).decrypt(rotated.encrypt("x")) == "x"  # the first key encrypts
    with pytest.raises(ConfigError):
        Encryptor([new]).decrypt(sealed)
    with pytest.raises(ConfigError):
        Encryptor([old]).decrypt(sealed[:-4] + "AAAA")


def test_canary_refuses_another_key() -> None:
    one, two = Encryptor([generate_key()]), Encryptor([generate_key()])
    one.check_canary(one.canary())
    with pytest.raises(ConfigError) as caught:
        two.check_canary(one.canary())
    assert "same --encryption-key" in caught.value.detail
