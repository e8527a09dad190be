"""Checks on configuration archives: a gzip'd tar whose members stay inside the run's directory.

The agent extracts with tarfile's "data" filter as a second line of defence; the server refuses a bad
archive at upload so that a user learns of it at once and nothing bad is ever stored.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib

from outpost.errors import Unprocessable

MAX_ARCHIVE_BYTES = 100 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_MEMBERS = 100_000


def bad(detail: str) -> Unprocessable:
    return Unprocessable(detail, title="invalid configuration archive")


def _inside(name: str) -> bool:
    if name.startswith("/") or "\\" in name:
        return False
    normal = posixpath.normpath(name)
    return normal != ".." and not normal.startswith("../")


def validate(data: bytes) -> int:
    """Raise Unprocessable unless `data` is a safe tar.gz; return the unpacked size."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise bad(f"The archive is {len(data)} bytes; the limit is {MAX_ARCHIVE_BYTES}.")
    if data[:2] != b"\x1f\x8b":
        raise bad("The upload is not gzip data: send a .tar.gz of the configuration directory.")
    # Decompress with a hard cap first, so a gzip bomb costs at most the cap.
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = decompressor.decompress(data, MAX_UNPACKED_BYTES + 1)
    except zlib.error as exc:
        raise bad(f"The gzip data is corrupt ({exc}).") from None
    if len(raw) > MAX_UNPACKED_BYTES or decompressor.unconsumed_tail:
        raise bad(f"The archive unpacks to more than {MAX_UNPACKED_BYTES} bytes.")
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise bad(f"The archive has more than {MAX_MEMBERS} entries.")
                name = member.name
                if not _inside(name):
                    raise bad(f"The archive entry {name!r} points outside the configuration directory.")
                if member.issym() or member.islnk():
                    target = member.linkname
                    resolved = target if member.islnk() else posixpath.join(posixpath.dirname(name), target)
                    if not _inside(resolved):
                        raise bad(f"The link {name!r} -> {target!r} leads outside the configuration directory.")
                elif not (member.isfile() or member.isdir()):
                    raise bad(f"The archive entry {name!r} is a device, FIFO or other special file.")
                total += max(member.size, 0)
                if total > MAX_UNPACKED_BYTES:
                    raise bad(f"The archive unpacks to more than {MAX_UNPACKED_BYTES} bytes.")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as exc:
        raise bad(f"The upload is not a valid tar archive ({exc}).") from None
    return total
