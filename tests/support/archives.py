"""Hostile configuration archives, one per way out of a run's directory (shared by server and agent tests)."""

from __future__ import annotations

import io
import tarfile
import zlib

MAIN_TF = b'resource "null_resource" "x" {}\n'


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def file(name: str, content: bytes = MAIN_TF) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def gzip_bomb(unpacked: int, member: int = 128 * 1024 * 1024) -> bytes:
    """A real tar.gz of zero-filled files, `unpacked` bytes in all, about a thousand times smaller.

    Concatenated gzip members decompress as one stream, so one compressed MiB of zeros is repeated
    instead of compressing a gigabyte (which takes seconds)."""
    block = 1024 * 1024
    zeros = _gzip(bytes(block))
    parts = []
    for n in range(-(-unpacked // member)):
        info = tarfile.TarInfo(f"zeros{n}.bin")
        info.size = member
        parts.append(_gzip(info.tobuf(format=tarfile.GNU_FORMAT)))
        parts.extend([zeros] * (member // block))
    parts.append(_gzip(bytes(1024)))  # the end-of-archive marker
    return b"".join(parts)


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def hostile() -> dict[str, bytes]:
    """Each archive holds a harmless main.tf and one way out."""
    return {
        "dot-dot path": tar_gz(file("main.tf"), file("../escaped.tf")),
        "dot-dot inside a path": tar_gz(file("main.tf"), file("modules/../../escaped.tf")),
        "absolute path": tar_gz(file("main.tf"), file("/tmp/outpost-escaped.tf")),
        "symlink out": tar_gz(file("main.tf"), special("out", tarfile.SYMTYPE, "../..")),
        "absolute symlink": tar_gz(file("main.tf"), special("shadow", tarfile.SYMTYPE, "/etc/shadow")),
        "symlink then write through it": tar_gz(
            file("main.tf"), special("out", tarfile.SYMTYPE, ".."), file("out/escaped.tf")
        ),
        "symlink chain": tar_gz(
            file("main.tf"), special("here", tarfile.SYMTYPE, "."), special("up", tarfile.SYMTYPE, "here/..")
        ),
        "hard link out": tar_gz(file("main.tf"), special("passwd", tarfile.LNKTYPE, "../../../etc/passwd")),
        "absolute hard link": tar_gz(file("main.tf"), special("passwd", tarfile.LNKTYPE, "/etc/passwd")),
        "character device": tar_gz(file("main.tf"), special("null", tarfile.CHRTYPE)),
        "block device": tar_gz(file("main.tf"), special("sda", tarfile.BLKTYPE)),
        "fifo": tar_gz(file("main.tf"), special("pipe", tarfile.FIFOTYPE)),
    }
