"""The gzip decoder with each inflater it may run on (isal, stdlib zlib): same bytes, same refusals."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zlib
from types import ModuleType

import pytest

from workers import unpack
from workers.domain import sha256_digest
from workers.errors import LimitExceeded, UnsafeArchiveError
from workers.settings import UnpackLimits
from workers.unpack import LayerReader


def _engines() -> list[ModuleType]:
    engines = [zlib]
    try:
        from isal import isal_zlib
    except ImportError:
        return engines
    return [*engines, isal_zlib]


@pytest.fixture(params=_engines(), ids=lambda module: module.__name__)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module: ModuleType = request.param
    monkeypatch.setattr(unpack, "_gzip", module)
    monkeypatch.setattr(unpack, "_GZIP_ERRORS", (zlib.error, module.error))
    return module


def _tar(files: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _read(blob: bytes, limits: UnpackLimits | None = None) -> tuple[list[tuple[str, bytes | None]], LayerReader]:
    reader = LayerReader(io.BytesIO(blob), limits=limits or UnpackLimits())
    return [(entry.path, content) for entry, content in reader], reader


def test_isal_is_the_default_when_installed() -> None:
    pytest.importorskip("isal")
    assert unpack.GZIP_ENGINE == "isal"


def test_member_ending_inside_a_bounded_step_is_not_read_twice(engine: ModuleType) -> None:
    # The first member ends in highly compressible data, so the step that reaches its end decompresses a
    # leftover input tail; the second member must then be read exactly once.
    rng = random.Random(7)
    files = [("a", rng.randbytes(1_500_000)), ("zeros", b"\0" * 3_000_000), ("b", rng.randbytes(2_000_000))]
    raw = _tar(files)
    cut = 1_500_000 + 3 * 512 + 3_000_000
    blob = gzip.compress(raw[:cut], mtime=0) + gzip.compress(raw[cut:], mtime=0)
    entries, reader = _read(blob)
    assert [(path, content) for path, content in entries] == files
    assert reader.stats.diff_id == sha256_digest(raw)
    assert reader.stats.uncompressed_bytes == len(raw)


def test_many_small_members(engine: ModuleType) -> None:
    raw = _tar([(f"f{i}", bytes([i]) * (700 * i)) for i in range(40)])
    blob = b"".join(gzip.compress(raw[i : i + 4096], mtime=0) for i in range(0, len(raw), 4096))
    entries, reader = _read(blob)
    assert len(entries) == 40
    assert reader.stats.diff_id == sha256_digest(raw)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda blob: blob[:-40], "truncated gzip"),
        (lambda blob: blob[:-8] + bytes([blob[-8] ^ 1]) + blob[-7:], "corrupt gzip"),  # CRC32 trailer
        (lambda blob: blob[:-4] + bytes([blob[-4] ^ 1]) + blob[-3:], "corrupt gzip"),  # ISIZE trailer
        (lambda blob: blob[:10] + b"\xff" * 64, "corrupt gzip"),  # reserved deflate block type
        (lambda blob: blob + b"\0" * 16, "trailing garbage"),
    ],
    ids=["truncated", "bad-crc", "bad-isize", "bad-block", "zero-padding"],
)
def test_damaged_streams_are_refused(engine: ModuleType, damage: object, message: str) -> None:
    blob = gzip.compress(_tar([("a", random.Random(1).randbytes(20_000))]), mtime=0)
    with pytest.raises(UnsafeArchiveError, match=message):
        _read(damage(blob))  # type: ignore[operator]


def test_bomb_output_is_bounded_per_step(engine: ModuleType) -> None:
    bomb = gzip.compress(_tar([("zeros", b"\0" * (16 << 20))]), mtime=0)
    with pytest.raises(LimitExceeded, match="ratio"):
        _read(bomb, UnpackLimits(ratio_floor=1 << 20, max_ratio=100))
    decoder = unpack._Decoder(unpack._CountingReader(io.BytesIO(bomb), b""), unpack.Compression.GZIP)
    sizes = []
    while chunk := decoder.next_chunk():
        sizes.append(len(chunk))
    assert max(sizes) <= unpack.CHUNK
    assert sum(sizes) > 16 << 20


def test_large_file_is_read_to_the_cap_only(engine: ModuleType) -> None:
    data = random.Random(3).randbytes(3 << 20)
    raw = _tar([("big", data), ("after", b"tail")])
    entries, reader = _read(gzip.compress(raw, mtime=0), UnpackLimits(scan_file_bytes=1 << 20))
    assert entries == [("big", data[: 1 << 20]), ("after", b"tail")]
    assert reader.stats.diff_id == sha256_digest(raw)
