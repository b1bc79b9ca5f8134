"""A forward-only tar reader for layer streams: ustar, GNU and pax headers parsed from one buffer, nothing seeks.

Python's ``tarfile`` in stream mode spends more time per member than decompression does on a typical layer
(headers parsed field by field through several small reads). This reader does the same work from a single
buffer, for exactly what a layer needs: regular files, directories, links, device and fifo entries (which the
unpacker refuses), pax extended and global headers, GNU long names and long links. Anything malformed raises
:class:`TarFormatError`; the unpacker turns it into a recorded, never silent, refusal of the layer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
READ_SIZE = 1 << 20
POSIX_MAGIC = b"ustar\x0000"
REGULAR_TYPES = frozenset({b"0", b"\x00", b"7"})
# Types whose header is followed by data blocks; for the others a size field is ignored, as tar does.
KNOWN_TYPES = frozenset({b"0", b"\x00", b"7", b"1", b"2", b"3", b"4", b"5", b"6"})
MAX_META_BYTES = 1 << 20  # a pax header or GNU long name larger than this is hostile, not a long path
ENCODING = "utf-8"


class TarFormatError(Exception):
    """The stream is not a well-formed tar archive."""


class _Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


@dataclass(slots=True)
class TarMember:
    """One archive member, after pax and GNU long-name headers were applied."""

    name: str
    size: int
    mode: int
    uid: int
    gid: int
    type: bytes
    linkname: str

    def isreg(self) -> bool:
        """A regular file (including the old contiguous type)."""
        return self.type in REGULAR_TYPES

    def isdir(self) -> bool:
        """A directory."""
        return self.type == b"5"

    def issym(self) -> bool:
        """A symbolic link."""
        return self.type == b"2"

    def islnk(self) -> bool:
        """A hard link."""
        return self.type == b"1"

    def ischr(self) -> bool:
        """A character device."""
        return self.type == b"3"

    def isblk(self) -> bool:
        """A block device."""
        return self.type == b"4"

    def isfifo(self) -> bool:
        """A named pipe."""
        return self.type == b"6"


def _text(field: bytes) -> str:
    end = field.find(b"\x00")
    return (field if end < 0 else field[:end]).decode(ENCODING, "surrogateescape")


def _number(field: bytes) -> int:
    """An octal ASCII field, or GNU base-256 for values that do not fit (large files, big uids)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise TarFormatError("negative number in a tar header")
    digits = field.replace(b"\x00", b" ").strip()
    if not digits:
        return 0
    try:
        return int(digits, 8)
    except ValueError:
        raise TarFormatError(f"invalid number {digits[:20]!r} in a tar header") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    unsigned = sum(header) - sum(header[148:156]) + 8 * 0x20
    if stored == unsigned:
        return True
    # Some old tars summed signed bytes.
    signed = unsigned - 2 * sum(b for b in header if b > 127) + 2 * sum(b for b in header[148:156] if b > 127)
    return stored == signed


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<len> key=value\\n"`` records; the length counts the whole record."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # trailing NUL padding
        space = data.find(b" ", pos)
        if space < 0 or space - pos > 20:
            raise TarFormatError("malformed pax header record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("malformed pax header length") from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarFormatError("malformed pax header record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise TarFormatError("pax header record without '='")
        records[key.decode(ENCODING, "surrogateescape")] = value.decode(ENCODING, "surrogateescape")
        pos = end
    return records


class TarStream:
    """Iterate members of a tar stream; :meth:`read` reads the current member's data (the rest is skipped)."""

    def __init__(self, source: _Readable) -> None:
        self._source = source
        self._buffer = bytearray()
        self._pos = 0
        self._remaining = 0  # data bytes of the current member not consumed yet
        self._padding = 0
        self._global: dict[str, str] = {}
        self.headers_seen = 0

    # -- buffer ---------------------------------------------------------------------------------------------

    def _available(self) -> int:
        return len(self._buffer) - self._pos

    def _fill(self, size: int) -> bool:
        """Make ``size`` bytes available from the current position; False at the end of the stream."""
        while self._available() < size:
            data = self._source.read(READ_SIZE)
            if not data:
                return False
            if self._pos:
                del self._buffer[: self._pos]  # keep the buffer near one read's worth
                self._pos = 0
            self._buffer += data
        return True

    def _take(self, size: int) -> bytes:
        if not self._fill(size):
            raise TarFormatError("unexpected end of data in a tar member")
        start = self._pos
        self._pos += size
        return bytes(self._buffer[start : self._pos])

    def _skip(self, size: int) -> None:
        while size > 0:
            if not self._available() and not self._fill(1):
                raise TarFormatError("unexpected end of data in a tar member")
            step = min(size, self._available())
            self._pos += step
            size -= step

    # -- members --------------------------------------------------------------------------------------------

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current member's data.

        Large reads are assembled piece by piece, so a file at the 64 MiB scan cap costs about one copy of
        itself, not the buffer's copy plus the result's.
        """
        size = min(size, self._remaining)
        self._remaining -= size
        if size <= READ_SIZE:
            return self._take(size) if size else b""
        out = io.BytesIO()
        left = size
        while left:
            if not self._available() and not self._fill(1):
                raise TarFormatError("unexpected end of data in a tar member")
            step = min(left, self._available())
            with memoryview(self._buffer) as view:
                out.write(view[self._pos : self._pos + step])
            self._pos += step
            left -= step
        return out.getvalue()

    def _meta(self, size: int) -> bytes:
        """The data of a pax or GNU long-name header, bounded."""
        if size > MAX_META_BYTES:
            raise TarFormatError(f"tar meta header of {size} bytes")
        data = self._take(size)
        self._skip(-size % BLOCK)
        return data

    def __iter__(self) -> Iterator[TarMember]:
        pending_pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        while True:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            if not self._fill(BLOCK):
                if self._available():
                    raise TarFormatError("truncated tar header")
                if self.headers_seen == 0:
                    raise TarFormatError("empty tar stream")
                return  # end of data without the end-of-archive blocks: as tar, accept
            header = self._take(BLOCK)
            if header == ZERO_BLOCK:
                # End-of-archive marker (alone, it is the empty layer some builders emit); the unpacker drains,
                # and hashes, whatever follows.
                return
            if not _checksum_ok(header):
                raise TarFormatError("bad tar header checksum" if self.headers_seen else "not a tar header")
            self.headers_seen += 1
            kind = header[156:157]
            size = _number(header[124:136])
            if kind in (b"x", b"g"):
                records = _pax_records(self._meta(size))
                (self._global if kind == b"g" else pending_pax).update(records)
                continue
            if kind in (b"L", b"K"):
                value = _text(self._meta(size))
                if kind == b"L":
                    long_name = value
                else:
                    long_link = value
                continue
            name = _text(header[0:100])
            if header[257:265] == POSIX_MAGIC:
                prefix = _text(header[345:500])
                if prefix:
                    name = f"{prefix}/{name}"
            member = TarMember(
                name=name,
                size=size,
                mode=_number(header[100:108]),
                uid=_number(header[108:116]),
                gid=_number(header[116:124]),
                type=kind,
                linkname=_text(header[157:257]),
            )
            pax = {**self._global, **pending_pax}
            if long_name is not None:
                member.name = long_name
            if long_link is not None:
                member.linkname = long_link
            if "path" in pax:
                member.name = pax["path"]
            if "linkpath" in pax:
                member.linkname = pax["linkpath"]
            try:
                if "size" in pax:
                    member.size = int(pax["size"])
                if "uid" in pax:
                    member.uid = int(pax["uid"])
                if "gid" in pax:
                    member.gid = int(pax["gid"])
            except ValueError:
                raise TarFormatError("invalid number in a pax header") from None
            if member.size < 0:
                raise TarFormatError("negative size in a tar header")
            pending_pax, long_name, long_link = {}, None, None
            if member.type == b"0" and member.name.endswith("/"):
                member.type = b"5"  # old tars mark a directory with a trailing slash on a regular entry
            if member.isdir():
                member.name = member.name.rstrip("/")
            has_data = member.isreg() or member.type not in KNOWN_TYPES
            if member.type == b"S" and header[482]:
                self._skip_sparse_extensions()
            self._remaining = member.size if has_data else 0
            self._padding = -self._remaining % BLOCK
            yield member

    def _skip_sparse_extensions(self) -> None:
        """Old GNU sparse headers chain extension blocks before the data; the entry itself is refused."""
        while True:
            block = self._take(BLOCK)
            if not block[504]:
                return
