"""Reading and writing a job's files after sandboxed code has run in its work directory.

A run owns its work directory: between two terraform commands it may have replaced any file or
directory there with a symbolic link (to /etc/shadow, to /dev/zero, into the agent's data). The agent,
which may be root, must not follow such links when it reads the state or the plan a run leaves, nor when
it writes a file there. Paths are opened one component at a time below a directory the run cannot
replace (the work directory itself is the sandbox's mount point, in a directory the run cannot write),
never following a link, and only regular files of bounded size are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from outpost.errors import AgentError


class UnsafeFile(AgentError):
    """A file the run left is not a plain file inside its directory."""


def _open_beneath(root: Path, relative: Path, flags: int, mode: int = 0o600) -> int:
    parts = relative.parts
    if not parts or relative.is_absolute() or ".." in parts:
        raise UnsafeFile(f"{relative} is not a path inside the job's directory")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise UnsafeFile(f"{relative}: {part} is not a directory of the job ({exc.strerror})") from None
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=fd)
    finally:
        os.close(fd)


def read_beneath(root: Path, relative: Path, limit: int) -> bytes | None:
    """The regular file's bytes; None if it does not exist. UnsafeFile for a link, a device, a FIFO, a
    directory, or a file over `limit` bytes."""
    try:
        fd = _open_beneath(root, relative, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafeFile(f"{relative} cannot be read safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{relative} is not a regular file")
        if info.st_size > limit:
            raise UnsafeFile(f"{relative} is over {limit} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{relative} is over {limit} bytes")
    return data


def write_new(root: Path, relative: Path, data: bytes) -> None:
    """Create the file, which must not exist yet (so no link planted in its place is followed)."""
    try:
        fd = _open_beneath(root, relative, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError as exc:
        raise UnsafeFile(f"{relative} cannot be created safely ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
