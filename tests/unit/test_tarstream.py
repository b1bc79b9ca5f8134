"""The forward-only tar reader against archives Python's tarfile writes in every format, and hostile ones."""

from __future__ import annotations

import io
import tarfile

import pytest

from workers.tarstream import BLOCK, TarFormatError, TarStream

LONG = "deep/" * 40 + "name-longer-than-a-ustar-header-allows.txt"


def _archive(fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in (("etc/passwd", b"root:x:0:0\n"), (LONG, b"long" * 300), ("empty", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid, info.gid = 1000, 1001
            tar.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("var/lib/")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "/usr/bin/" + "x" * 120
        tar.addfile(link)
        hard = tarfile.TarInfo("usr/bin/view")
        hard.type, hard.linkname = tarfile.LNKTYPE, "usr/bin/vim"
        tar.addfile(hard)
    return out.getvalue()


def _members(raw: bytes, read: bool = True) -> list[tuple[str, bytes, int, str, int, int, int]]:
    stream = TarStream(io.BytesIO(raw))
    out = []
    for member in stream:
        data = stream.read(member.size) if read and member.isreg() else b""
        out.append((member.name, member.type, member.mode, member.linkname, member.uid, member.gid, len(data)))
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_reads_what_tarfile_writes(fmt: int) -> None:
    raw = _archive(fmt)  # long names and links: GNU long-name headers or pax records
    expected = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
        for info in tar:
            size = info.size if info.isreg() else 0
            expected.append((info.name.rstrip("/"), info.type, info.mode, info.linkname, info.uid, info.gid, size))
    assert _members(raw) == expected


def test_ustar_prefix_and_skipping_unread_data() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("a/" * 60 + "f", "second"):
            info = tarfile.TarInfo(name)
            info.size = 700
            tar.addfile(info, io.BytesIO(b"z" * 700))
    names = [m[0] for m in _members(out.getvalue(), read=False)]
    assert names == ["a/" * 60 + "f", "second"]


def test_large_uid_in_base256() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.uid = 8**8 + 5  # does not fit the octal field
        tar.addfile(info)
    assert _members(out.getvalue())[0][4] == 8**8 + 5


def test_an_end_marker_alone_is_an_empty_archive() -> None:
    assert _members(bytes(2 * BLOCK)) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty tar stream"),
        (b"x" * 100, "truncated tar header"),
        (b"not a tar header at all".ljust(BLOCK, b"\0"), "not a tar header"),
    ],
)
def test_not_a_tar(raw: bytes, message: str) -> None:
    with pytest.raises(TarFormatError, match=message):
        _members(raw)


def _two_files() -> bytearray:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("one", "two"):
            info = tarfile.TarInfo(name)
            info.size = 100
            tar.addfile(info, io.BytesIO(b"d" * 100))
    return bytearray(out.getvalue())


def test_truncated_member_data() -> None:
    raw = _two_files()[: BLOCK + 50]  # the first header and half of its data
    stream = TarStream(io.BytesIO(bytes(raw)))
    with pytest.raises(TarFormatError, match="unexpected end of data"):
        for member in stream:
            stream.read(member.size)


def test_corrupt_second_header() -> None:
    raw = _two_files()
    raw[2 * BLOCK + 1] ^= 0xFF  # the second header's name: its checksum no longer matches
    with pytest.raises(TarFormatError, match="bad tar header checksum"):
        _members(bytes(raw))


@pytest.mark.parametrize("record", [b"99 path=x\n", b"5 path\n", b"abc path=x\n", b"12 path=x\nXX"])
def test_malformed_pax_records(record: bytes) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(record)
    header = info.tobuf(tarfile.USTAR_FORMAT)
    raw = header + record.ljust(BLOCK, b"\0") + tarfile.TarInfo("f").tobuf() + bytes(2 * BLOCK)
    with pytest.raises(TarFormatError, match="pax"):
        _members(raw)


def test_oversized_meta_header_is_refused() -> None:
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = 2 << 20
    raw = info.tobuf(tarfile.GNU_FORMAT) + bytes(2 << 20) + bytes(2 * BLOCK)
    with pytest.raises(TarFormatError, match="meta header"):
        _members(raw)
