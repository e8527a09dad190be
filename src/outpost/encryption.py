"""Encryption at rest of secrets the server must read back (sensitive variable values).

The key comes from the server's configuration: `--encryption-key` (or `OUTPOST_ENCRYPTION_KEY`), or
`--encryption-key-file`; with neither, a key is generated once into the data directory, which suits the
embedded default (SQLite in that same directory). Several keys may be given, separated by commas: the
first encrypts, every one decrypts, so a key can be rotated. Values are Fernet tokens (AES-128-CBC with
HMAC-SHA256, from the `cryptography` library): tampering is detected, not just hidden.

A canary encrypted with the key is kept in the database; a server started with a key that cannot read
it refuses to start (say, a second replica given another key) instead of failing later, run by run.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from outpost.errors import ConfigError

KEY_FILE = "encryption.key"
CANARY = b"outpost encryption check"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(text: str, source: str) -> list[str]:
    keys = [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"The encryption key from {source} is empty.")
    for key in keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"The encryption key from {source} is not a valid key: it must be 32 random bytes in URL-safe "
                "base64 (44 characters). Make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    return keys


def resolve_keys(key: str | None, key_file: Path | None, data_dir: Path, *, create: bool = True) -> list[str]:
    """The configured keys; the data directory's key file (made if missing and `create`) otherwise."""
    if key:
        return parse_keys(key, "--encryption-key")
    if key_file is not None:
        try:
            return parse_keys(key_file.read_text(), str(key_file))
        except OSError as exc:
            raise ConfigError(f"Cannot read the encryption key file {key_file}: {exc.strerror}.") from None
    path = data_dir / KEY_FILE
    if path.exists():
        return parse_keys(path.read_text(), str(path))
    if not create:
        return []
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once on one data directory agree on one key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_keys(path.read_text(), str(path))
    with os.fdopen(fd, "w") as out:
        out.write(generate_key() + "\n")
    return parse_keys(path.read_text(), str(path))


class Encryptor:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("No encryption key.")
        self.keys = keys
        self._box = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._box.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "A stored secret cannot be decrypted with the configured encryption key: the server runs "
                "with another key than the one that encrypted it. Start it with the original key "
                "(several may be given, comma-separated, during a rotation)."
            ) from None

    def canary(self) -> str:
        return self._box.encrypt(CANARY).decode()

    def check_canary(self, stored: str) -> None:
        try:
            ok = self._box.decrypt(stored.encode()) == CANARY
        except InvalidToken:
            ok = False
        if not ok:
            raise ConfigError(
                "The encryption key does not match the one this database's secrets were encrypted with. "
                "Give every server the same --encryption-key (or --encryption-key-file); during a rotation "
                "list the new key first and the old one after it, comma-separated."
            )
