"""The unpacker and merged view against hostile layers: each case is a clear refusal or error, never a crash."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from collections.abc import Iterable

import pytest
import zstandard

from workers.domain import sha256_digest
from workers.errors import LimitExceeded, UnsafeArchiveError
from workers.layerfs import MergedFilesystem
from workers.settings import UnpackLimits
from workers.unpack import Compression, EntryKind, LayerEntry, LayerReader, normalise_path

LIMITS = UnpackLimits()


def _tar(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _read(blob: bytes, limits: UnpackLimits = LIMITS) -> tuple[list[tuple[LayerEntry, bytes | None]], LayerReader]:
    reader = LayerReader(io.BytesIO(blob), limits=limits)
    return list(reader), reader


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress, zstandard.ZstdCompressor().compress])
def test_compression_is_sniffed_and_diff_id_covers_the_tar(compress: object) -> None:
    raw = _tar([_file("etc/app.conf", b"key=value\n")])
    blob = compress(raw)  # type: ignore[operator]
    entries, reader = _read(blob)
    assert [(e.path, c) for e, c in entries] == [("etc/app.conf", b"key=value\n")]
    assert reader.stats.diff_id == sha256_digest(raw)
    assert reader.stats.compressed_bytes == len(blob)
    assert reader.stats.compression in set(Compression)


def test_multi_member_gzip_is_one_stream() -> None:
    raw = _tar([_file("a", b"1" * 5000), _file("b", b"2")])
    blob = gzip.compress(raw[:3000]) + gzip.compress(raw[3000:])
    entries, reader = _read(blob)
    assert [e.path for e, _ in entries] == ["a", "b"]
    assert reader.stats.diff_id == sha256_digest(raw)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../etc/passwd", "traversal"),
        ("a/../../x", "traversal"),
        ("ok/..", "traversal"),
    ],
)
def test_traversal_is_refused(name: str, reason: str) -> None:
    entries, reader = _read(_tar([_file(name), _file("fine")]))
    assert [e.path for e, _ in entries] == ["fine"]
    assert len(reader.refusals) == 1
    assert reason in reader.refusals[0].reason


def test_absolute_paths_are_rooted_in_the_image() -> None:
    entries, reader = _read(_tar([_file("/etc/cron.d/x"), _file("./usr//bin/./y")]))
    assert [e.path for e, _ in entries] == ["etc/cron.d/x", "usr/bin/y"]
    assert not reader.refusals


def test_devices_and_fifos_are_refused() -> None:
    members = [
        _special("dev/sda", tarfile.BLKTYPE),
        _special("dev/mem", tarfile.CHRTYPE),
        _special("tmp/pipe", tarfile.FIFOTYPE),
        _file("ok"),
    ]
    entries, reader = _read(_tar(members))
    assert [e.path for e, _ in entries] == ["ok"]
    assert sorted(r.reason for r in reader.refusals) == ["device file", "device file", "fifo"]


def test_symlink_escape_is_recorded_not_followed() -> None:
    entries, _ = _read(_tar([_special("etc/shadow-link", tarfile.SYMTYPE, "../../../../etc/shadow")]))
    ((entry, content),) = entries
    assert entry.kind is EntryKind.SYMLINK
    assert entry.linkname == "../../../../etc/shadow"
    assert content is None
    fs = MergedFilesystem()
    fs.apply(0, [entry])
    assert fs.resolve("etc/shadow-link") is None  # resolves inside the image root only: nothing there


def test_hardlink_escape_is_refused() -> None:
    entries, reader = _read(_tar([_file("a"), _special("b", tarfile.LNKTYPE, "../../etc/passwd")]))
    assert [e.path for e, _ in entries] == ["a"]
    assert "hardlink escape" in reader.refusals[0].reason


def test_nul_and_undecodable_names() -> None:
    assert normalise_path("a\x00b") == (None, "NUL byte in name")
    raw = _tar([_file("caf\udce9")], fmt=tarfile.GNU_FORMAT)
    entries, _ = _read(raw)
    assert entries[0][0].path == "caf\ufffd"


def test_pax_long_names() -> None:
    long_name = "d/" + "x" * 300 + "/file.sh"
    entries, _ = _read(_tar([_file(long_name, b"echo hi")]))
    assert entries[0][0].path == long_name


def test_too_long_path_is_refused() -> None:
    limits = UnpackLimits(max_path_length=64)
    entries, reader = _read(_tar([_file("a/" + "b" * 100), _file("ok")]), limits)
    assert [e.path for e, _ in entries] == ["ok"]
    assert "longer than" in reader.refusals[0].reason


def test_gzip_bomb_hits_the_ratio_cap() -> None:
    bomb = gzip.compress(_tar([_file("zeros", b"\0" * (8 << 20))]))
    limits = UnpackLimits(ratio_floor=1 << 20, max_ratio=100)
    with pytest.raises(LimitExceeded, match="ratio"):
        _read(bomb, limits)


def test_total_bytes_cap() -> None:
    with pytest.raises(LimitExceeded, match="uncompressed size"):
        _read(_tar([_file("big", b"a" * (2 << 20))]), UnpackLimits(max_total_bytes=1 << 20))


def test_file_size_cap() -> None:
    with pytest.raises(LimitExceeded, match="file size"):
        _read(_tar([_file("big", b"a" * 4096)]), UnpackLimits(max_file_bytes=1024))


def test_entry_cap() -> None:
    with pytest.raises(LimitExceeded, match="entry count"):
        _read(_tar(_file(f"f{i}", b"") for i in range(50)), UnpackLimits(max_entries=10))


def test_scan_content_is_capped_but_hash_covers_everything() -> None:
    raw = _tar([_file("big", b"a" * 10_000)])
    entries, reader = _read(raw, UnpackLimits(scan_file_bytes=100))
    assert entries[0][1] == b"a" * 100
    assert entries[0][0].size == 10_000
    assert reader.stats.diff_id == sha256_digest(raw)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (gzip.compress(_tar([_file("a", b"x" * 5000)]), mtime=0)[:-40], "truncated gzip"),
        (gzip.compress(b"x" * 20000, mtime=0)[:20] + b"\xff" * 50, "gzip"),
        (gzip.compress(_tar([_file("a")]), mtime=0) + b"garbage!", "trailing garbage"),
        (zstandard.ZstdCompressor().compress(_tar([_file("a", b"y" * 50_000)]))[:60], "tar"),
        (b"this is not a tar archive at all" * 40, "tar"),
        (b"", "tar"),
    ],
    # Explicit ids: pytest-xdist workers must collect the same names, and raw bytes make poor ones.
    ids=["truncated-gzip", "corrupt-deflate", "gzip-trailing-garbage", "truncated-zstd", "not-a-tar", "empty"],
)
def test_corrupt_streams_raise_clear_errors(blob: bytes, message: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=message):
        _read(blob)


def test_whiteouts_validated() -> None:
    entries, reader = _read(_tar([_file("a/.wh."), _file("a/.wh.."), _file("a/.wh.gone"), _file("b/.wh..wh..opq")]))
    kinds = [(e.kind, e.target) for e, _ in entries]
    assert kinds == [(EntryKind.WHITEOUT, "a/gone"), (EntryKind.OPAQUE, "b")]
    assert [r.reason for r in reader.refusals] == ["invalid whiteout", "invalid whiteout"]


def _entry(path: str, kind: EntryKind = EntryKind.FILE, target: str | None = None) -> LayerEntry:
    return LayerEntry(path=path, kind=kind, size=1, mode=0o644, uid=0, gid=0, target=target)


def test_merged_view_whiteouts_opaque_and_replacement() -> None:
    fs = MergedFilesystem()
    fs.apply(0, [_entry("etc", EntryKind.DIR), _entry("etc/a"), _entry("opt/x/payload"), _entry("d/keep")])
    fs.apply(
        1,
        [
            _entry("opt/x/.wh.payload", EntryKind.WHITEOUT, target="opt/x/payload"),
            _entry("d/new"),  # listed before the opaque marker: must survive it
            _entry("d/.wh..wh..opq", EntryKind.OPAQUE, target="d"),
            _entry("etc"),  # a file replaces the directory and its subtree
        ],
    )
    assert fs.get("opt/x/payload") is None
    assert not fs.in_final_fs("opt/x/payload", 0)
    assert fs.get("d/keep") is None
    assert fs.in_final_fs("d/new", 1)
    assert fs.get("etc/a") is None
    assert fs.get("etc").kind is EntryKind.FILE  # type: ignore[union-attr]
    # Deleted then re-added: the third layer's version is the final one.
    fs.apply(2, [_entry("opt/x/payload")])
    assert fs.in_final_fs("opt/x/payload", 2)
    assert not fs.in_final_fs("opt/x/payload", 0)


def test_whiteout_never_removes_same_layer_entries() -> None:
    fs = MergedFilesystem()
    fs.apply(0, [_entry("a"), _entry("a", EntryKind.WHITEOUT, target="a")])
    assert fs.in_final_fs("a", 0)


def test_resolve_follows_links_inside_the_image_and_stops_loops() -> None:
    fs = MergedFilesystem()
    link = LayerEntry(path="usr/bin/x", kind=EntryKind.SYMLINK, size=0, mode=0, uid=0, gid=0, linkname="../lib/real")
    loop_a = LayerEntry(path="l1", kind=EntryKind.SYMLINK, size=0, mode=0, uid=0, gid=0, linkname="l2")
    loop_b = LayerEntry(path="l2", kind=EntryKind.SYMLINK, size=0, mode=0, uid=0, gid=0, linkname="/l1")
    fs.apply(0, [_entry("usr/lib/real"), link, loop_a, loop_b])
    assert fs.resolve("usr/bin/x").path == "usr/lib/real"  # type: ignore[union-attr]
    assert fs.resolve("l1") is None


def test_many_whiteouts_over_many_files_is_fast_enough_to_finish() -> None:
    fs = MergedFilesystem()
    fs.apply(0, (_entry(f"d{i % 100}/f{i}") for i in range(100_000)))
    fs.apply(1, (_entry(f"d{i}/.wh..wh..opq", EntryKind.OPAQUE, target=f"d{i}") for i in range(50)))
    assert len(fs) == 50_000


@pytest.fixture(scope="module")
def million_empty_files() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo()
        for i in range(1_000_000):
            info.name = f"f/{i}"
            tar.addfile(info)
    return gzip.compress(out.getvalue(), compresslevel=1)


def _count_with_peak(blob: bytes, limits: UnpackLimits) -> tuple[int, int, Exception | None]:
    tracemalloc.start()
    count, error = 0, None
    try:
        for _ in LayerReader(io.BytesIO(blob), limits=limits):
            count += 1
    except LimitExceeded as exc:
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak, error


@pytest.mark.slow
def test_a_million_empty_files_stream_in_bounded_memory(million_empty_files: bytes) -> None:
    """One million headers (above the default cap of 200,000, which an operator may raise) stream through
    with a constant memory peak: about 70 MB here whether the layer holds 20,000 entries or a million."""
    count, peak, error = _count_with_peak(million_empty_files, UnpackLimits(max_entries=2_000_000))
    assert error is None
    assert count == 1_000_000
    assert peak < 128 * 1024 * 1024
