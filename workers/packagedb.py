"""Package databases in an image (dpkg, distroless status.d, apk, rpm): which package owns a path, and its md5.

A file that a package owns and whose checksum matches the package database is the distribution's own content
(the e2scrub_all cron job, the bash man page on /dev/tcp, nmap's scripts); one that sits in a system path and no
package owns, or whose checksum differs from the database, is what an attacker drops. The database is itself
image content, so ownership only ever lowers the weight of a string match; it never hides an executable whose
checksum does not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.rpmdb import read_rpmdb_sqlite

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_INFO = "var/lib/dpkg/info/"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"  # distroless: one control stanza (and .md5sums) per package
APK_INSTALLED = "lib/apk/db/installed"
RPM_DBS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite", "var/lib/rpm/Packages")
_MD5_LINE = re.compile(r"^([0-9a-f]{32}) [ *]?(.+)$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


def is_package_db_path(path: str) -> bool:
    """True for the files :func:`parse_package_db_file` understands."""
    if path in (DPKG_STATUS, APK_INSTALLED) or path in RPM_DBS:
        return True
    if path.startswith(DPKG_INFO):
        return path.endswith((".list", ".md5sums")) and "/" not in path[len(DPKG_INFO) :]
    return path.startswith(DPKG_STATUS_D) and "/" not in path[len(DPKG_STATUS_D) :]


@dataclass(frozen=True)
class PackageDbFile:
    """What one package-database file says."""

    kind: str  # dpkg-status | dpkg-list | dpkg-md5sums | apk-installed | rpm | rpm-unread
    package: str | None = None  # for per-package files
    paths: tuple[str, ...] = ()  # root-relative paths the file says its package owns
    md5: Mapping[str, str] = field(default_factory=dict)  # root-relative path → md5 hex
    owners: Mapping[str, str] = field(default_factory=dict)  # apk, rpm, dpkg conffiles: path → package
    installed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """For the layer cache."""
        return {
            "kind": self.kind,
            "package": self.package,
            "paths": list(self.paths),
            "md5": dict(self.md5),
            "owners": dict(self.owners),
            "installed": list(self.installed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PackageDbFile:
        """Inverse of :meth:`to_json`."""
        return cls(
            kind=str(data["kind"]),
            package=data.get("package"),
            paths=tuple(data.get("paths") or ()),
            md5=dict(data.get("md5") or {}),
            owners=dict(data.get("owners") or {}),
            installed=tuple(data.get("installed") or ()),
        )


def _conffiles(value: str) -> dict[str, str]:
    """A status stanza's ``Conffiles:`` lines, " /etc/crontab <md5> [obsolete]", as path → md5."""
    out: dict[str, str] = {}
    for line in value.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("/") and _MD5.match(parts[1]):
            out[parts[0].lstrip("/")] = parts[1]
    return out


def _package_of(name: str) -> str:
    """'libc6:amd64.list' → 'libc6'."""
    stem = name.rsplit(".", 1)[0]
    return stem.split(":", 1)[0]


def _md5_lines(text: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _MD5_LINE.match(line.strip())
        if match:
            sums[match.group(2).strip().lstrip("/")] = match.group(1)
    return sums


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    current: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                yield current
            current, key = {}, None
            continue
        if line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        current[key] = value.strip()
    if current:
        yield current


def parse_package_db_file(path: str, content: bytes) -> PackageDbFile | None:
    """Parse one database file; None when it is not one after all. Hostile text never raises."""
    text = content.decode("utf-8", errors="replace")
    name = path.rsplit("/", 1)[-1]
    if path == DPKG_STATUS:
        stanzas = [s for s in _stanzas(text) if "Package" in s and s.get("Status", "").endswith(" installed")]
        # Conffiles (/etc/crontab, /etc/cron.d/*) are not in *.md5sums: their md5s live here, in the status file.
        conffiles: dict[str, str] = {}
        conffile_owners: dict[str, str] = {}
        for stanza in stanzas:
            for conffile, digest in _conffiles(stanza.get("Conffiles", "")).items():
                conffiles[conffile] = digest
                conffile_owners[conffile] = stanza["Package"]
        installed = tuple(s["Package"] for s in stanzas)
        return PackageDbFile(kind="dpkg-status", installed=installed, owners=conffile_owners, md5=conffiles)
    if path.startswith(DPKG_INFO) and name.endswith(".list"):
        listed = (line.strip().lstrip("/") for line in text.splitlines() if line.strip().startswith("/"))
        paths = tuple(p for p in listed if p not in ("", "."))  # dpkg lists the root itself as "/."
        return PackageDbFile(kind="dpkg-list", package=_package_of(name), paths=paths)
    if name.endswith(".md5sums") and (path.startswith(DPKG_INFO) or path.startswith(DPKG_STATUS_D)):
        sums = _md5_lines(text)
        return PackageDbFile(kind="dpkg-md5sums", package=_package_of(name), paths=tuple(sums), md5=sums)
    if path.startswith(DPKG_STATUS_D):
        stanza = next(iter(_stanzas(text)), {})
        package = stanza.get("Package")
        return PackageDbFile(kind="dpkg-status", installed=(package,) if package else ())
    if path == APK_INSTALLED:
        owners: dict[str, str] = {}
        for record in text.split("\n\n"):
            package, folder = None, ""
            for line in record.splitlines():
                tag, _, value = line.partition(":")
                if tag == "P":
                    package = value
                elif tag == "F":
                    folder = value.strip("/")
                elif tag == "R" and package:
                    owners[f"{folder}/{value}" if folder else value] = package
        return PackageDbFile(kind="apk-installed", owners=owners, installed=tuple(sorted(set(owners.values()))))
    if path in RPM_DBS:
        parsed = read_rpmdb_sqlite(content) if path.endswith(".sqlite") else None
        if parsed is None:
            # Present but not read (Berkeley DB, damaged): ownership stays unknown, never "unowned".
            return PackageDbFile(kind="rpm-unread")
        owners, sums = parsed
        return PackageDbFile(kind="rpm", owners=owners, md5=sums, installed=tuple(sorted(set(owners.values()))))
    return None


class Ownership:
    """Outcome of asking the package index about a path."""

    VERIFIED = "verified"  # owned, and the content's md5 matches the database
    OWNED = "owned"  # owned, no checksum to compare (apk, conffile, truncated read)
    MODIFIED = "modified"  # owned, but the content's md5 differs: a replaced package file
    UNOWNED = "unowned"  # a package database exists and no package claims the path
    UNKNOWN = "unknown"  # no readable package database


@dataclass(frozen=True)
class PackageIndex:
    """Ownership and checksums merged from the package-database files of the final filesystem."""

    owners: Mapping[str, str]
    md5: Mapping[str, str]
    readable: bool  # a dpkg, apk or rpm database was found and read

    @classmethod
    def build(cls, files: Iterable[PackageDbFile], canonical: Any = None) -> PackageIndex:
        """Merge database files; ``canonical(path) -> path`` maps /bin/x to usr/bin/x on merged-/usr roots."""
        owners: dict[str, str] = {}
        md5: dict[str, str] = {}
        kinds: set[str] = set()
        for db in files:
            kinds.add(db.kind)
            for path in db.paths:
                owners.setdefault(path, db.package or "?")
            for path, package in db.owners.items():
                owners.setdefault(path, package)
            for path, digest in db.md5.items():
                md5.setdefault(path, digest)
        if canonical is not None:
            for path in list(owners):
                real = canonical(path)
                if real and real != path:
                    owners.setdefault(real, owners[path])
                    if path in md5:
                        md5.setdefault(real, md5[path])
        readable = bool(kinds & {"dpkg-list", "dpkg-md5sums", "apk-installed", "rpm"})
        return cls(owners=owners, md5=md5, readable=readable)

    def check(self, path: str, content_md5: str | None) -> tuple[str, str | None]:
        """(Ownership outcome, package) for a file with the given content md5."""
        package = self.owners.get(path)
        if package is None:
            return (Ownership.UNOWNED if self.readable else Ownership.UNKNOWN), None
        expected = self.md5.get(path)
        if expected is None or content_md5 is None:
            return Ownership.OWNED, package
        return (Ownership.VERIFIED if expected == content_md5 else Ownership.MODIFIED), package
