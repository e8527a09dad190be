"""Masking sensitive values in logs, whatever the chunking."""

from __future__ import annotations

import random

import pytest

from outpost.agent.masking import MASK, Masker

SECRETS = ["s3cr3t-value", "abcd", "abcdefgh", 'pa$$w0rd"q', "multi\nline-secret"]
TEXT = (
    b'hello s3cr3t-value and abcdefgh then abcd and abcdefg? pa$$w0rd"q json: "pa$$w0rd\\"q" '
    b"key:\nmulti\nline-secret\n tail s3cr3t"
)


def _run(masker: Masker, parts: list[bytes]) -> bytes:
    return b"".join(masker.feed(p) for p in parts) + masker.flush()


def test_complete_values_are_replaced() -> None:
    out = _run(Masker(SECRETS), [TEXT])
    for secret in SECRETS:
        assert secret.encode() not in out
    assert b'pa$$w0rd\\"q' not in out  # the JSON-escaped form too
    assert out.count(MASK) == 7
    assert out.endswith(b" tail s3cr3t")  # a prefix alone is not a secret: released by flush


@pytest.mark.parametrize("seed", range(50))
def test_values_split_across_chunks_never_leak(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(TEXT)), rng.randint(1, 30)))
    parts = [TEXT[i:j] for i, j in zip([0, *cuts], [*cuts, len(TEXT)], strict=True)]
    out = _run(Masker(SECRETS), parts)
    assert out == _run(Masker(SECRETS), [TEXT])
    for secret in SECRETS:
        assert secret.encode() not in out


def test_byte_by_byte() -> None:
    assert _run(Masker(["password123"]), [bytes([b]) for b in b"x password123 y"]) == b"x *** y"


def test_output_is_held_only_while_a_value_may_be_starting() -> None:
    masker = Masker(["secret"])
    assert masker.feed(b"plain line\n") == b"plain line\n"
    assert masker.feed(b"begins with sec") == b"begins with "
    assert masker.feed(b"ond\n") == b"second\n"


def test_short_values_are_not_masked() -> None:
    assert _run(Masker(["1", "on", "abc"]), [b"1 on abc"]) == b"1 on abc"


def test_no_values() -> None:
    assert _run(Masker([]), [b"a", b"b"]) == b"ab"
