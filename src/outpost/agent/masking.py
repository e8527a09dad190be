"""Masking sensitive values in a job's log before it leaves the agent.

Output arrives in arbitrary chunks, so a value may be split across two of them. The masker replaces
every complete occurrence, and holds back only the tail that could still be the start of a value
(nothing when the tail cannot begin one), so output is delayed only while a match is possible.
`flush()` releases what is held at the end of the stream. Values of fewer than MIN_LENGTH bytes are not
masked: masking "1" or "on" would blank out ordinary output and hide nothing of worth.
"""

from __future__ import annotations

import json
import re

MASK = b"***"
MIN_LENGTH = 4


def forms(value: str) -> set[bytes]:
    """The byte strings a value may appear as in terraform's output: as given, and JSON-escaped."""
    found = {value.encode()}
    escaped = json.dumps(value)[1:-1]
    if escaped != value:
        found.add(escaped.encode())
    return {f for f in found if len(f) >= MIN_LENGTH}


class Masker:
    def __init__(self, values: list[str]) -> None:
        secrets = set()
        for value in values:
            secrets |= forms(value)
        # Longest first: a value that contains another is replaced whole.
        self.secrets = sorted(secrets, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The masked bytes that are safe to emit now."""
        if self._pattern is None:
            return chunk
        data = self._held + chunk
        out = bytearray()
        while True:
            # Bytes from `cut` on could be the start of a value: they wait for more output. A match that
            # starts before `cut` is complete (a value cut short would have moved `cut` before it).
            cut = len(data) - self._partial_tail(data)
            last = 0
            for match in self._pattern.finditer(data):
                if match.start() >= cut:
                    break
                out += data[last : match.start()] + MASK
                last = match.end()
            if last <= cut:
                out += data[last:cut]
                self._held = data[cut:]
                return bytes(out)
            data = data[last:]  # a match ran past `cut`: look at what follows it afresh

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _partial_tail(self, data: bytes) -> int:
        """The length of the longest suffix of `data` that is a proper prefix of a secret."""
        longest = min(len(data), max((len(s) for s in self.secrets), default=1) - 1)
        for size in range(longest, 0, -1):
            tail = data[-size:]
            if any(s.startswith(tail) for s in self.secrets):
                return size
        return 0
