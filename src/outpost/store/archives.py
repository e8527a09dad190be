"""Checks on configuration archives: a gzip'd tar whose members stay inside the run's directory.

The server refuses a bad archive at upload (422, nothing stored) so that a user learns of it at once;
the agent runs the same checks again before extracting, and extracts with tarfile's "data" filter as a
last line of defence. Refused: names that are absolute or climb out with `..`; symbolic or hard links
whose target lies outside, also through other links (paths are resolved the way the kernel would,
link by link); device files, FIFOs and other special files; more than MAX_MEMBERS entries; and more than
MAX_UNPACKED_BYTES once decompressed (a gzip bomb is read as a stream and stopped at the limit, so it
costs neither that much memory nor that much time).
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
_MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


def bad(detail: str) -> Unprocessable:
    return Unprocessable(detail, title="invalid configuration archive")


class _Limited(io.RawIOBase):
    """The decompressed stream, refused once it grows past the limit."""

    def __init__(self, source: gzip.GzipFile, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self.source.read(len(buffer))
        except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise bad(f"The gzip data is corrupt or cut short ({exc or 'unexpected end'}).") from None
        self.total += len(data)
        if self.total > self.limit:
            raise bad(f"The archive unpacks to more than {self.limit} bytes.")
        buffer[: len(data)] = data
        return len(data)


class _Tree:
    """The directory tree the archive would make, enough to resolve paths through its symbolic links."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}  # normalized member path -> link target as written

    def resolve(self, path: str) -> str | None:
        """The real path inside the root (as "a/b"), or None if it would leave the root."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    return None
                resolved.pop()
                continue
            candidate = "/".join([*resolved, part])
            target = self.links.get(candidate)
            if target is None:
                resolved.append(part)
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return None
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        return "/".join(resolved)


def _check_member(tree: _Tree, member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise bad(
            f"The archive entry {name!r} points outside the configuration directory "
            "(absolute paths and backslashes are not allowed)."
        )
    # Where the entry lands, resolved as the kernel would: component by component, through earlier links.
    location = tree.resolve(name)
    if location is None:
        raise bad(f"The archive entry {name!r} points outside the configuration directory.")
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            resolved = None
        elif member.issym():  # relative to the directory the link is really in
            resolved = tree.resolve(posixpath.join(posixpath.dirname(location), target))
        else:  # a hard link names its target from the archive's root
            resolved = tree.resolve(target)
        if resolved is None:
            kind = "symbolic" if member.issym() else "hard"
            raise bad(f"The {kind} link {name!r} -> {target!r} leads outside the configuration directory.")
        if member.issym():
            tree.links[location] = target
    elif not (member.isfile() or member.isdir()):
        raise bad(f"The archive entry {name!r} is a device, FIFO or other special file.")


def validate(data: bytes) -> int:
    """Raise Unprocessable unless `data` is a safe tar.gz; return the unpacked size of its files."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise bad(f"The archive is {len(data)} bytes; the limit is {MAX_ARCHIVE_BYTES}.")
    if data[:2] != b"\x1f\x8b":
        raise bad("The upload is not gzip data: send a .tar.gz of the configuration directory.")
    tree = _Tree()
    total = 0
    stream = _Limited(gzip.GzipFile(fileobj=io.BytesIO(data)), MAX_UNPACKED_BYTES)
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream), mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise bad(f"The archive has more than {MAX_MEMBERS} entries.")
                _check_member(tree, member)
                total += max(member.size, 0)
                if total > MAX_UNPACKED_BYTES:
                    raise bad(f"The archive unpacks to more than {MAX_UNPACKED_BYTES} bytes.")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise bad(f"The upload is not a valid tar archive ({exc}).") from None
    return total
