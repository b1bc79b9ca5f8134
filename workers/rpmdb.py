"""Read an rpm database (rpmdb.sqlite, RHEL 9 / Fedora / UBI) from its bytes: which package owns which file.

Each row of the ``Packages`` table is an rpm header blob: an index of (tag, type, offset, count) entries over
a data area. File paths are BASENAMES joined to DIRNAMES through DIRINDEXES; FILEDIGESTS are md5 when
FILEDIGESTALGO says so (older rpms) and sha256 otherwise (the layer scan keeps md5 only, so those files are
"owned" without a checksum comparison). The older Berkeley DB ``Packages`` file is not read. Everything is
bounds-checked: the database is image content, and image content is hostile.
"""

from __future__ import annotations

import sqlite3
import struct

TAG_NAME = 1000
TAG_FILEDIGESTS = 1035
TAG_DIRINDEXES = 1116
TAG_BASENAMES = 1117
TAG_DIRNAMES = 1118
TAG_FILEDIGESTALGO = 5011
TYPE_INT32 = 4
TYPE_STRING = 6
TYPE_STRING_ARRAY = 8
DIGEST_MD5 = 1
MAX_INDEX_ENTRIES = 100_000
MAX_PACKAGES = 50_000


class RpmHeaderError(ValueError):
    """A header blob that does not parse."""


def _header(blob: bytes) -> dict[int, tuple[int, int, int]]:
    """tag → (type, offset into data, count), and checks the blob's own bounds."""
    if len(blob) < 8:
        raise RpmHeaderError("short header")
    entries, data_length = struct.unpack_from(">II", blob, 0)
    if entries > MAX_INDEX_ENTRIES or 8 + 16 * entries + data_length > len(blob):
        raise RpmHeaderError("header index out of bounds")
    index: dict[int, tuple[int, int, int]] = {}
    for i in range(entries):
        tag, kind, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if offset > data_length:
            raise RpmHeaderError("header entry out of bounds")
        index[tag] = (kind, offset, count)
    return index


def _strings(blob: bytes, index: dict[int, tuple[int, int, int]], tag: int) -> list[str]:
    entry = index.get(tag)
    if entry is None:
        return []
    kind, offset, count = entry
    if kind not in (TYPE_STRING, TYPE_STRING_ARRAY):
        raise RpmHeaderError(f"tag {tag} is not a string")
    data_start = 8 + 16 * struct.unpack_from(">I", blob, 0)[0]
    pos = data_start + offset
    out: list[str] = []
    for _ in range(count if kind == TYPE_STRING_ARRAY else 1):
        end = blob.find(b"\x00", pos)
        if end < 0:
            raise RpmHeaderError("unterminated string")
        out.append(blob[pos:end].decode("utf-8", "surrogateescape"))
        pos = end + 1
    return out


def _ints(blob: bytes, index: dict[int, tuple[int, int, int]], tag: int) -> list[int]:
    entry = index.get(tag)
    if entry is None:
        return []
    kind, offset, count = entry
    data_start = 8 + 16 * struct.unpack_from(">I", blob, 0)[0]
    if kind != TYPE_INT32 or data_start + offset + 4 * count > len(blob):
        raise RpmHeaderError(f"tag {tag} is not an int32 array in bounds")
    return list(struct.unpack_from(f">{count}I", blob, data_start + offset))


def package_files(blob: bytes) -> tuple[str, dict[str, str | None]]:
    """(package name, root-relative path → md5 or None) of one header blob."""
    index = _header(blob)
    names = _strings(blob, index, TAG_NAME)
    basenames = _strings(blob, index, TAG_BASENAMES)
    dirnames = _strings(blob, index, TAG_DIRNAMES)
    dirindexes = _ints(blob, index, TAG_DIRINDEXES)
    if len(dirindexes) != len(basenames) or any(i >= len(dirnames) for i in dirindexes):
        raise RpmHeaderError("file lists do not line up")
    digests = _strings(blob, index, TAG_FILEDIGESTS)
    algorithm = (_ints(blob, index, TAG_FILEDIGESTALGO) or [DIGEST_MD5])[0]
    use_md5 = algorithm == DIGEST_MD5 and len(digests) == len(basenames)
    files: dict[str, str | None] = {}
    for i, base in enumerate(basenames):
        path = (dirnames[dirindexes[i]] + base).lstrip("/")
        files[path] = (digests[i] or None) if use_md5 else None
    return (names[0] if names else "?"), files


def read_rpmdb_sqlite(content: bytes) -> tuple[dict[str, str], dict[str, str]] | None:
    """(path → package, path → md5) from an rpmdb.sqlite file's bytes; None when it cannot be read."""
    if not content.startswith(b"SQLite format 3\x00"):
        return None  # also an empty file, which sqlite3's deserialize() answers with MemoryError
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(content)
        rows = connection.execute("SELECT blob FROM Packages LIMIT ?", (MAX_PACKAGES,)).fetchall()
    except (sqlite3.DatabaseError, OverflowError, ValueError):
        return None
    finally:
        connection.close()
    owners: dict[str, str] = {}
    md5: dict[str, str] = {}
    for (blob,) in rows:
        if not isinstance(blob, bytes):
            continue
        try:
            package, files = package_files(blob)
        except (RpmHeaderError, struct.error):
            continue  # one damaged header does not hide the others' ownership
        for path, digest in files.items():
            owners.setdefault(path, package)
            if digest:
                md5.setdefault(path, digest)
    return owners, md5
