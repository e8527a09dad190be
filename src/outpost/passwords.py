"""Password hashing for web sign-in: scrypt with a per-user salt, compared in constant time.

Unlike API tokens (random 256-bit secrets, where a fast hash is enough), passwords are guessable, so each
check must be expensive: scrypt's memory cost makes offline guessing on GPUs slow. The parameters are
stored with each hash, so they can be raised later without invalidating existing passwords.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCHEME = "scrypt"
# One of OWASP's equivalent minimums for scrypt (n=2**15, r=8, p=3): 32 MiB per check, not 128 MiB.
_N, _R, _P = 2**15, 8, 3
_SALT_BYTES = 16
_KEY_BYTES = 32
MIN_LENGTH = 8
MAX_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem must cover 128 * n * r bytes (plus a little), or OpenSSL refuses the parameters.
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=_KEY_BYTES)


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"A password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"A password has at most {MAX_LENGTH} characters.")


def hash_password(password: str) -> str:
    check_strength(password)
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored`; False for no password set or a malformed hash."""
    if not stored or len(password) > MAX_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(key)
        derived = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected)


def dummy_verify(password: str) -> None:
    """Spend the time of a real check, so an unknown email cannot be told apart by response time."""
    _derive(password[:MAX_LENGTH], b"\0" * _SALT_BYTES, _N, _R, _P)
