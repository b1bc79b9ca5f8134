"""Stream a layer blob as tar entries, safely: sniffed decompression, digests, caps, normalised names, refusals.

Nothing is ever written to disk. Every byte of the blob is read (so the blob digest and the diff_id cover
all of it), and memory stays bounded whatever the layer size: decompression output is produced in bounded
chunks and each file's content is read only up to the scan cap.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any, BinaryIO

import zstandard

from workers.domain import Digest, clip_evidence
from workers.errors import LimitExceeded, UnsafeArchiveError
from workers.settings import UnpackLimits
from workers.tarstream import TarFormatError, TarMember, TarStream

_gzip: ModuleType  # the gzip inflater: isal.isal_zlib when importable, else the stdlib's zlib
try:
    # ISA-L inflates the real Debian layer about twice as fast as zlib with the same decompressobj API
    # (bounded max_length, unconsumed_tail, unused_data, eof, trailer checks): README "Choices".
    from isal import isal_zlib

    _gzip, GZIP_ENGINE = isal_zlib, "isal"
except ImportError:  # pragma: no cover - isal is pinned; zlib keeps the unpacker working without it
    _gzip, GZIP_ENGINE = zlib, "zlib"
# isal raises its own IsalError (not a zlib.error) for corrupt data and bad trailers.
_GZIP_ERRORS: tuple[type[Exception], ...] = (zlib.error, _gzip.error)

CHUNK = 1 << 20  # bytes per read from the blob and per decompression step
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


class EntryKind(StrEnum):
    """What a tar entry is once normalised."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    WHITEOUT = "whiteout"
    OPAQUE = "opaque"


class Compression(StrEnum):
    """Compression detected from the blob's magic bytes (never from the media type)."""

    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"


@dataclass(frozen=True, slots=True)  # slots: a layer scan keeps one per entry (tens of thousands)
class LayerEntry:
    """One accepted tar entry with a normalised, root-relative path."""

    path: str
    kind: EntryKind
    size: int
    mode: int
    uid: int
    gid: int
    linkname: str | None = None
    target: str | None = None  # WHITEOUT: path removed; OPAQUE: directory whose lower children are hidden


@dataclass(frozen=True)
class Refusal:
    """A tar entry that was refused, recorded rather than silently dropped."""

    path: str
    reason: str


@dataclass(frozen=True)
class LayerStats:
    """Totals of one fully read layer."""

    entries: int
    files: int
    uncompressed_bytes: int
    compressed_bytes: int
    compression: Compression
    diff_id: Digest


def sniff_compression(head: bytes) -> Compression:
    """Compression from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


class _CountingReader:
    """Reads the compressed blob, counting bytes; ``head`` is the sniffed prefix served first."""

    def __init__(self, stream: BinaryIO, head: bytes) -> None:
        self._stream = stream
        self._head = head
        self.count = len(head)

    def read(self, size: int = CHUNK) -> bytes:
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        data = self._stream.read(size)
        self.count += len(data)
        return data


class _Decoder:
    """Produces decompressed bytes in chunks of at most CHUNK; b"" at the end."""

    def __init__(self, source: _CountingReader, compression: Compression) -> None:
        self.source = source
        self.compression = compression
        self._zlib: Any = None  # a gzip member's decompressobj (isal or zlib)
        self._pending = b""
        self._zstd = None
        self._gzip_members = 0
        if compression is Compression.ZSTD:
            reader = zstandard.ZstdDecompressor()
            self._zstd = reader.stream_reader(source, read_across_frames=True)  # type: ignore[arg-type]

    def next_chunk(self) -> bytes:
        if self.compression is Compression.NONE:
            return self.source.read(CHUNK)
        if self._zstd is not None:
            try:
                return bytes(self._zstd.read(CHUNK))
            except zstandard.ZstdError as exc:
                raise UnsafeArchiveError(f"corrupt zstd stream after {self.source.count} bytes: {exc}") from None
        return self._next_gzip()

    def _next_gzip(self) -> bytes:
        while True:
            if self._zlib is None:
                while len(self._pending) < 2:
                    more = self.source.read(CHUNK)
                    if not more:
                        break
                    self._pending += more
                if not self._pending:
                    if self._gzip_members == 0:
                        raise UnsafeArchiveError("empty gzip stream")
                    return b""
                if not self._pending.startswith(GZIP_MAGIC):
                    raise UnsafeArchiveError(f"trailing garbage after gzip member at byte {self.source.count}")
                self._zlib = _gzip.decompressobj(16 + _gzip.MAX_WBITS)
                self._gzip_members += 1
            decomp = self._zlib
            if not self._pending:
                self._pending = self.source.read(CHUNK)
                if not self._pending:
                    raise UnsafeArchiveError(f"truncated gzip stream after {self.source.count} bytes")
            try:
                out: bytes = decomp.decompress(self._pending, CHUNK)
            except _GZIP_ERRORS as exc:
                raise UnsafeArchiveError(f"corrupt gzip stream after {self.source.count} bytes: {exc}") from None
            if decomp.eof:
                # Every input byte past the member is in unused_data. (CPython 3.11's zlib also leaves it
                # in unconsumed_tail when the step's input was a tail: adding both read the next member twice.)
                self._pending = decomp.unused_data
                self._zlib = None
            else:
                self._pending = decomp.unconsumed_tail
            if out:
                return out


class _DecodedStream:
    """File-like view of the decompressed tar stream that hashes it and enforces byte and ratio caps."""

    def __init__(self, decoder: _Decoder, limits: UnpackLimits) -> None:
        self._decoder = decoder
        self._limits = limits
        self._buffer = bytearray()
        self._eof = False
        self.total = 0
        self.sha256 = hashlib.sha256()

    def _fill(self, size: int) -> None:
        while not self._eof and len(self._buffer) < size:
            chunk = self._decoder.next_chunk()
            if not chunk:
                self._eof = True
                break
            self.total += len(chunk)
            self.sha256.update(chunk)
            self._check_limits()
            self._buffer += chunk

    def _check_limits(self) -> None:
        limits = self._limits
        if self.total > limits.max_total_bytes:
            raise LimitExceeded(
                f"uncompressed size cap: more than {limits.max_total_bytes} bytes "
                f"(from {self._decoder.source.count} compressed)"
            )
        compressed = max(self._decoder.source.count, 1)
        if self.total > limits.ratio_floor and self.total > limits.max_ratio * compressed:
            raise LimitExceeded(
                f"compression ratio cap: {self.total} bytes from {compressed} compressed "
                f"(more than {limits.max_ratio}:1)"
            )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        self._fill(size)
        with memoryview(self._buffer) as view:  # one copy out of the buffer, not a slice and then a copy
            out = bytes(view[:size])
        del self._buffer[:size]
        return out

    def drain(self) -> None:
        """Read to the very end so the hashes and counts cover every byte."""
        while self.read(CHUNK):
            pass


def normalise_path(name: str) -> tuple[str | None, str | None]:
    """(normalised path, None) or (None, refusal reason); ("", None) is the image root itself."""
    if "\x00" in name:
        return None, "NUL byte in name"
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None, "path traversal ('..' component)"
        parts.append(part)
    # Undecodable bytes arrive as surrogate escapes; keep a printable, stable form.
    path = "/".join(parts).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return path, None


class LayerReader:
    """Iterate a layer blob stream as ``(LayerEntry, content)`` pairs, bounded in memory.

    ``content`` is the first ``limits.scan_file_bytes`` of a regular file (None for other kinds).
    ``refusals`` and ``stats`` are complete once iteration has finished.
    """

    def __init__(self, stream: BinaryIO, *, limits: UnpackLimits, compression: Compression | None = None) -> None:
        self.limits = limits
        head = stream.read(8)
        self.compression = compression or sniff_compression(head)
        self._source = _CountingReader(stream, head)
        self._decoded = _DecodedStream(_Decoder(self._source, self.compression), limits)
        self.refusals: list[Refusal] = []
        self._entries = 0
        self._files = 0
        self._stats: LayerStats | None = None

    @property
    def stats(self) -> LayerStats:
        """Totals; only valid after iteration completed."""
        if self._stats is None:
            raise RuntimeError("LayerReader.stats read before the layer was fully read")
        return self._stats

    def _refuse(self, name: str, reason: str) -> None:
        self.refusals.append(Refusal(path=clip_evidence(name, 300), reason=reason))

    def __iter__(self) -> Iterator[tuple[LayerEntry, bytes | None]]:
        tar = TarStream(self._decoded)
        try:
            for member in tar:
                self._entries += 1
                if self._entries > self.limits.max_entries:
                    raise LimitExceeded(f"entry count cap: more than {self.limits.max_entries} entries")
                entry = self._accept(member)
                if entry is None:
                    continue
                content: bytes | None = None
                if entry.kind is EntryKind.FILE:
                    self._files += 1
                    if member.size > self.limits.max_file_bytes:
                        raise LimitExceeded(
                            f"file size cap: /{entry.path} is {member.size} bytes "
                            f"(more than {self.limits.max_file_bytes})"
                        )
                    content = tar.read(min(member.size, self.limits.scan_file_bytes))
                yield entry, content
        except TarFormatError as exc:
            if self._decoded.total == 0:
                raise UnsafeArchiveError(f"empty {self.compression.value} layer: no tar stream") from None
            if tar.headers_seen == 0:
                raise UnsafeArchiveError(f"not a tar stream: {exc}") from None
            raise UnsafeArchiveError(f"malformed or truncated tar stream: {exc}") from None
        self._decoded.drain()
        self._stats = LayerStats(
            entries=self._entries,
            files=self._files,
            uncompressed_bytes=self._decoded.total,
            compressed_bytes=self._source.count,
            compression=self.compression,
            diff_id=Digest("sha256:" + self._decoded.sha256.hexdigest()),
        )

    def _accept(self, member: TarMember) -> LayerEntry | None:
        """Normalise one member, or record why it is refused (None)."""
        name = member.name
        if len(name) > self.limits.max_path_length:
            self._refuse(name, f"path longer than {self.limits.max_path_length} bytes")
            return None
        path, reason = normalise_path(name)
        if path is None:
            self._refuse(name, reason or "invalid name")
            return None
        if path == "":
            return None  # the root directory entry ("./") carries nothing to scan

        def make(kind: EntryKind, *, linkname: str | None = None, target: str | None = None) -> LayerEntry:
            return LayerEntry(
                path=path or "",
                kind=kind,
                size=member.size,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                linkname=linkname,
                target=target,
            )

        parent, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            if not member.isreg():
                self._refuse(name, "whiteout that is not a regular file")
                return None
            if base == OPAQUE_MARKER:
                return make(EntryKind.OPAQUE, target=parent)
            hidden = base[len(WHITEOUT_PREFIX) :]
            if not hidden or hidden in (".", "..") or hidden.startswith(WHITEOUT_PREFIX):
                self._refuse(name, "invalid whiteout")
                return None
            target = f"{parent}/{hidden}" if parent else hidden
            return make(EntryKind.WHITEOUT, target=target)
        if member.isreg():
            return make(EntryKind.FILE)
        if member.isdir():
            return make(EntryKind.DIR)
        if member.issym():
            return make(EntryKind.SYMLINK, linkname=member.linkname)
        if member.islnk():
            link, link_reason = normalise_path(member.linkname)
            if not link:
                self._refuse(name, f"hardlink escape: {link_reason or 'empty target'}")
                return None
            return make(EntryKind.HARDLINK, linkname=link)
        if member.ischr() or member.isblk():
            self._refuse(name, "device file")
        elif member.isfifo():
            self._refuse(name, "fifo")
        else:
            self._refuse(name, f"unsupported tar entry type {member.type!r}")
        return None
