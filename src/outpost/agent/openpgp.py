"""Checking a detached OpenPGP signature against the operator's release key, with GnuPG.

Why `gpg` and not a Python library: GnuPG is the reference implementation, packaged and patched by
every distribution (Debian's `gnupg`), and its `--status-fd` output is a documented machine interface;
PGPy, the pure-Python option, is unmaintained and breaks with current `cryptography`; python-gnupg is
only a wrapper around this same binary. `gpgv` would be smaller but, by design, checks neither expiry
nor revocation, so `gpg --verify` it is.

Every check runs in a throwaway GNUPGHOME holding only the configured key, with `--no-autostart` so no
gpg-agent or dirmngr is left behind; the operator's own keyrings are never read or touched.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from outpost.errors import AgentError


class SignatureError(AgentError):
    """The signature could not be verified with the configured key."""


# Statuses that mean "do not trust this", whatever else gpg printed.
_REFUSALS = {
    "BADSIG": "the signature does not match the file (the file or the signature was altered)",
    "EXPKEYSIG": "the signing key has expired",
    "REVKEYSIG": "the signing key was revoked",
    "EXPSIG": "the signature has expired",
    "ERRSIG": "the signature was not made by the configured key (or cannot be checked)",
    "NO_PUBKEY": "the signature was not made by the configured key",
}


async def _gpg(home: Path, *args: str) -> tuple[int, str, str]:
    binary = shutil.which("gpg")
    if binary is None:
        raise SignatureError("GnuPG (`gpg`) is needed to verify Terraform downloads: install the gnupg package.")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--homedir",
        str(home),
        "--batch",
        "--no-tty",
        "--no-autostart",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def key_fingerprints(key_file: Path) -> list[str]:
    """The primary-key fingerprints in an (armored or binary) public key file."""
    with tempfile.TemporaryDirectory(prefix="outpost-gpg-") as home:
        code, out, err = await _gpg(
            Path(home), "--with-colons", "--import-options", "show-only", "--import", str(key_file)
        )
    fingerprints, primary = [], False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            primary = fields[0] == "pub"
        elif fields[0] == "fpr" and primary:
            fingerprints.append(fields[9])
            primary = False
    if code != 0 or not fingerprints:
        raise SignatureError(f"The release key {key_file} holds no usable OpenPGP public key ({_last_line(err)}).")
    return fingerprints


async def verify_detached(key_file: Path, signature: Path, data: Path) -> str:
    """Return the primary fingerprint of the key that made `signature` over `data`; raise if it is not good."""
    trusted = await key_fingerprints(key_file)
    with tempfile.TemporaryDirectory(prefix="outpost-gpg-") as home:
        code, _, err = await _gpg(Path(home), "--import", str(key_file))
        if code != 0:
            raise SignatureError(f"The release key {key_file} could not be loaded ({_last_line(err)}).")
        code, status, err = await _gpg(
            Path(home), "--trust-model", "always", "--status-fd", "1", "--verify", str(signature), str(data)
        )
    statuses = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    for words in statuses:
        if words and words[0] in _REFUSALS:
            raise SignatureError(_REFUSALS[words[0]])
    good = any(words[:1] == ["GOODSIG"] for words in statuses)
    valid = [words for words in statuses if words[:1] == ["VALIDSIG"]]
    if code != 0 or not good or not valid:
        raise SignatureError(f"gpg did not accept the signature ({_last_line(err)})")
    # VALIDSIG's last field is the primary key's fingerprint (the signing key may be a subkey).
    primary = valid[0][-1]
    if primary not in trusted:
        raise SignatureError(f"the signature was made by key {primary}, which is not the configured key")
    return primary


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no details"
