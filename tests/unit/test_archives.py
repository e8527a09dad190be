"""Configuration archives: what the server accepts at upload and what it refuses."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from outpost.errors import Unprocessable
from outpost.store import archives
from outpost.store.archives import validate

MAIN_TF = b'resource "null_resource" "x" {}\n'


def _tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _file(name: str, content: bytes = MAIN_TF) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _refused(data: bytes) -> Unprocessable:
    with pytest.raises(Unprocessable) as caught:
        validate(data)
    assert caught.value.status == 422
    assert caught.value.title == "invalid configuration archive"
    return caught.value


def test_good_archive_passes_and_reports_its_size() -> None:
    directory = tarfile.TarInfo("modules")
    directory.type = tarfile.DIRTYPE
    data = _tar_gz(
        _file("main.tf"),
        (directory, None),
        _file("modules/net/variables.tf", b"variable x {}\n"),
        _special("modules/link.tf", tarfile.SYMTYPE, "../main.tf"),
        _special("copy.tf", tarfile.LNKTYPE, "main.tf"),
    )
    assert validate(data) == len(MAIN_TF) + len(b"variable x {}\n")


def test_empty_archive_passes() -> None:
    assert validate(_tar_gz()) == 0


def test_not_gzip() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:  # a plain, uncompressed tar
        info, content = _file("main.tf")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    assert "not gzip" in _refused(buffer.getvalue()).detail
    assert "not gzip" in _refused(b"").detail


def test_corrupt_gzip() -> None:
    good = _tar_gz(_file("main.tf"))
    corrupt = good[:10] + b"\xff" * 64  # a valid gzip header followed by no valid deflate stream
    assert "corrupt" in _refused(corrupt).detail


def test_gzip_of_something_else_than_a_tar() -> None:
    assert "tar" in _refused(gzip.compress(b"hello, this is not a tar archive" * 40)).detail


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "..", "/etc/x", "a\\..\\evil"])
def test_member_outside_the_directory(name: str) -> None:
    assert "outside" in _refused(_tar_gz(_file("main.tf"), _file(name))).detail


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "../outside"])
def test_symlink_out(target: str) -> None:
    detail = _refused(_tar_gz(_file("main.tf"), _special("link", tarfile.SYMTYPE, target))).detail
    assert "link" in detail
    assert "outside" in detail


def test_symlink_out_from_a_subdirectory() -> None:
    # "../x" from inside "a/b/" stays inside, but one more "../" does not.
    validate(_tar_gz(_special("a/b/link", tarfile.SYMTYPE, "../../x")))
    assert "outside" in _refused(_tar_gz(_special("a/b/link", tarfile.SYMTYPE, "../../../x"))).detail


@pytest.mark.parametrize("target", ["../x", "/etc/passwd"])
def test_hard_link_out(target: str) -> None:
    detail = _refused(_tar_gz(_file("main.tf"), _special("hard", tarfile.LNKTYPE, target))).detail
    assert "link" in detail
    assert "outside" in detail


@pytest.mark.parametrize(
    ("kind", "name"), [(tarfile.CHRTYPE, "null"), (tarfile.BLKTYPE, "sda"), (tarfile.FIFOTYPE, "pipe")]
)
def test_special_files(kind: bytes, name: str) -> None:
    info, _ = _special(name, kind)
    info.devmajor, info.devminor = 1, 3
    detail = _refused(_tar_gz(_file("main.tf"), (info, None))).detail
    assert "special" in detail
    assert name in detail


def test_gzip_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 1024 * 1024)
    data = _tar_gz(_file("zeros.bin", bytes(2 * 1024 * 1024)))
    assert len(data) < 100 * 1024  # it is small on the wire
    assert "more than 1048576 bytes" in _refused(data).detail


def test_within_the_unpacked_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 1024 * 1024)
    assert validate(_tar_gz(_file("zeros.bin", bytes(512 * 1024)))) == 512 * 1024


def test_too_large_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _tar_gz(_file("main.tf"))
    monkeypatch.setattr(archives, "MAX_ARCHIVE_BYTES", len(data) - 1)
    assert "limit" in _refused(data).detail


def test_too_many_members(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 3)
    validate(_tar_gz(*(_file(f"f{i}.tf") for i in range(3))))
    assert "more than 3 entries" in _refused(_tar_gz(*(_file(f"f{i}.tf") for i in range(4)))).detail


# --- links that escape only through other links (resolved as the kernel would) -----------------


def test_link_through_a_link_to_the_root_escapes() -> None:
    # "here" is the root itself; "here/.." is then the root's parent, although "up" reads as staying inside.
    data = _tar_gz(_special("here", tarfile.SYMTYPE, "."), _special("up", tarfile.SYMTYPE, "here/.."))
    assert "outside" in _refused(data).detail


def test_file_written_through_a_link_to_outside_is_refused() -> None:
    data = _tar_gz(_special("sub/deeper", tarfile.SYMTYPE, ".."), _special("d", tarfile.SYMTYPE, "sub/deeper/.."))
    assert "outside" in _refused(data).detail
    # A member path that goes through a link leading out, one link at a time.
    data = _tar_gz(_special("a", tarfile.SYMTYPE, "b"), _special("b", tarfile.SYMTYPE, "."), _file("a/../evil"))
    assert "outside" in _refused(data).detail


def test_hard_link_through_a_symlink_is_refused() -> None:
    data = _tar_gz(_special("root", tarfile.SYMTYPE, "."), _special("h", tarfile.LNKTYPE, "root/../etc/passwd"))
    assert "outside" in _refused(data).detail


def test_links_that_stay_inside_pass() -> None:
    data = _tar_gz(
        _file("modules/shared/main.tf"),
        _special("envs/prod/shared", tarfile.SYMTYPE, "../../modules/shared"),
        _special("envs/prod/main.tf", tarfile.LNKTYPE, "modules/shared/main.tf"),
    )
    validate(data)


def test_link_loops_are_refused() -> None:
    data = _tar_gz(_special("a", tarfile.SYMTYPE, "b"), _special("b", tarfile.SYMTYPE, "a"), _file("a/x"))
    assert "outside" in _refused(data).detail
