"""Identifiers and secrets.

Resource ids follow Terraform Cloud's `prefix-<random>` shape. Secrets carry a recognisable prefix (so a
leaked one can be spotted by secret scanners), have 256 bits of entropy, and are stored only as SHA-256
hashes: a fast hash is enough for random secrets of this size, and it keeps lookup by hash indexable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_UNBIASED = 256 - 256 % len(_ALPHABET)


def new_id(prefix: str, length: int = 16) -> str:
    # Random bytes drawn at once (secrets.choice reads the system's random source once per character),
    # each kept only below the largest multiple of the alphabet's size, so every character is equally likely.
    chars: list[str] = []
    while len(chars) < length:
        chars += [_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(2 * length) if b < _UNBIASED]
    return f"{prefix}-" + "".join(chars[:length])


class TokenKind:
    USER = "opu"
    POOL = "opa"
    AGENT_SESSION = "ops"
    JOB = "opj"
    CAPABILITY = "opc"
    WEB_SESSION = "opw"


def new_secret(kind: str) -> str:
    return f"{kind}_{secrets.token_urlsafe(32)}"


def secret_kind(token: str) -> str | None:
    head, sep, _ = token.partition("_")
    return head if sep else None


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secrets_match(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(token), stored_hash)
