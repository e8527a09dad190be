"""outpost.ids: resource ids in Terraform Cloud's `prefix-<random>` shape."""

from __future__ import annotations

import re
import string
from collections import Counter

from outpost.ids import new_id


def test_ids_have_the_prefix_and_sixteen_letters_or_digits_and_do_not_repeat() -> None:
    ids = [new_id("run") for _ in range(2000)]
    assert all(re.fullmatch(r"run-[A-Za-z0-9]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert re.fullmatch(r"ws-[A-Za-z0-9]{8}", new_id("ws", 8))


def test_every_character_is_about_equally_likely() -> None:
    counts = Counter("".join(new_id("x")[2:] for _ in range(40000)))  # 640000 characters, about 10300 each
    alphabet = string.ascii_letters + string.digits
    assert set(counts) == set(alphabet)
    # Taking every byte modulo 62 would draw 8 characters 5 times in 256 and the rest 4 times: 1.25 times
    # as often. Unbiased, the counts stay within a few percent of one another (standard deviation 1 %).
    assert max(counts.values()) < 1.15 * min(counts.values())
