"""rpm databases (rpmdb.sqlite) read from their bytes: ownership, md5s, and hostile databases."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest

from tests.support.oci import FileSpec, tar_layer, write_image_layout
from workers.packagedb import Ownership, PackageIndex, parse_package_db_file
from workers.pipeline import Vetter, load_scanners
from workers.rpmdb import TYPE_INT32, TYPE_STRING, TYPE_STRING_ARRAY, package_files, read_rpmdb_sqlite
from workers.settings import PROJECT_ROOT
from workers.sources import OciLayoutSource

FAKE_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57


def header(name: str, files: dict[str, bytes], *, md5: bool = True) -> bytes:
    """An rpm header blob as rpm writes it: index entries over a data area."""
    dirs = sorted({"/" + p.rpartition("/")[0] + "/" for p in files})
    entries: list[tuple[int, int, bytes, int]] = [
        (1000, TYPE_STRING, name.encode() + b"\0", 1),
        (1117, TYPE_STRING_ARRAY, b"".join(p.rpartition("/")[2].encode() + b"\0" for p in files), len(files)),
        (1118, TYPE_STRING_ARRAY, b"".join(d.encode() + b"\0" for d in dirs), len(dirs)),
        (
            1116,
            TYPE_INT32,
            b"".join(struct.pack(">I", dirs.index("/" + p.rpartition("/")[0] + "/")) for p in files),
            len(files),
        ),
    ]
    digests = [hashlib.md5(d).hexdigest() if md5 else hashlib.sha256(d).hexdigest() for d in files.values()]
    entries.append((1035, TYPE_STRING_ARRAY, b"".join(d.encode() + b"\0" for d in digests), len(files)))
    entries.append((5011, TYPE_INT32, struct.pack(">I", 1 if md5 else 8), 1))
    index, data = b"", b""
    for tag, kind, payload, count in entries:
        if kind == TYPE_INT32:
            data += b"\0" * (-len(data) % 4)
        index += struct.pack(">IIII", tag, kind, len(data), count)
        data += payload
    return struct.pack(">II", len(entries), len(data)) + index + data


def rpmdb(tmp_path: Path, *blobs: bytes) -> bytes:
    path = tmp_path / "rpmdb.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    connection.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    connection.commit()
    connection.close()
    return path.read_bytes()


def test_header_files_and_md5() -> None:
    name, files = package_files(header("bash", {"usr/bin/bash": b"bash", "etc/skel/.bashrc": b"rc"}))
    assert name == "bash"
    assert files == {
        "usr/bin/bash": hashlib.md5(b"bash").hexdigest(),
        "etc/skel/.bashrc": hashlib.md5(b"rc").hexdigest(),
    }
    _, sha_files = package_files(header("x", {"usr/bin/x": b"x"}, md5=False))
    assert sha_files == {"usr/bin/x": None}  # sha256 digests: owned, no md5 to compare


def test_database_gives_ownership(tmp_path: Path) -> None:
    raw = rpmdb(
        tmp_path, header("coreutils", {"usr/bin/ls": b"ls"}), b"\xff" * 40, header("sed", {"usr/bin/sed": b"s"})
    )
    parsed = read_rpmdb_sqlite(raw)
    assert parsed is not None
    owners, md5 = parsed
    assert owners == {"usr/bin/ls": "coreutils", "usr/bin/sed": "sed"}  # the damaged row is skipped
    assert md5["usr/bin/ls"] == hashlib.md5(b"ls").hexdigest()
    db = parse_package_db_file("var/lib/rpm/rpmdb.sqlite", raw)
    assert db is not None and db.kind == "rpm"
    index = PackageIndex.build([db])
    assert index.check("usr/bin/ls", hashlib.md5(b"ls").hexdigest()) == (Ownership.VERIFIED, "coreutils")
    assert index.check("usr/bin/ls", hashlib.md5(b"trojan").hexdigest()) == (Ownership.MODIFIED, "coreutils")
    assert index.check("usr/bin/kworker", None) == (Ownership.UNOWNED, None)


@pytest.mark.parametrize("raw", [b"", b"SQLite format 3\0" + b"\0" * 100, b"garbage" * 1000])
def test_unreadable_databases_leave_ownership_unknown(raw: bytes) -> None:
    db = parse_package_db_file("var/lib/rpm/rpmdb.sqlite", raw)
    assert db is not None and db.kind == "rpm-unread"
    assert PackageIndex.build([db]).check("usr/bin/x", None) == (Ownership.UNKNOWN, None)


def test_hostile_header_bounds() -> None:
    good = header("a", {"usr/bin/a": b"a"})
    for bad in (good[:6], struct.pack(">II", 10**6, 0), good[:8] + good[8:24].replace(good[16:20], b"\xff" * 4, 1)):
        with pytest.raises(ValueError):
            package_files(bad)


def test_rpm_image_ownership_in_the_pipeline(tmp_path: Path) -> None:
    ls = FAKE_ELF + b"ls"
    db = rpmdb(tmp_path, header("coreutils", {"usr/bin/ls": ls}))
    layer = tar_layer(
        {
            "var/lib/rpm/rpmdb.sqlite": db,
            "usr/bin/ls": FileSpec.file(ls, 0o755),
            "usr/bin/bioset": FileSpec.file(FAKE_ELF + b"dropped", 0o755),
        }
    )
    write_image_layout(tmp_path / "centos", [layer])
    report = Vetter(load_scanners(PROJECT_ROOT / "rules")).vet(OciLayoutSource(tmp_path / "centos", "latest"), "latest")
    unowned = {f.path for f in report.findings if f.rule == "context.unowned-system-binary"}
    assert unowned == {"/usr/bin/bioset"}
