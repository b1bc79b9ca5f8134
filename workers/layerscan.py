"""Scan one layer on its own: its entries, file-scanner hits, file facts and package databases, cacheable by digest.

Everything here depends only on the layer's bytes and the ruleset, never on the image the layer is in, so a
:class:`LayerScan` computed once is valid for every image that shares the layer (content addressing). What
depends on the image (build step, whether a file survives, whether anything runs it) is decided later, in
``workers/correlate.py``, from the merged filesystem and the config.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from workers.domain import Digest, Finding, parse_digest
from workers.errors import IntegrityError, LimitExceeded, UnsafeArchiveError
from workers.packagedb import PackageDbFile, is_package_db_path, parse_package_db_file
from workers.scanners.base import FileContext, FileScanner
from workers.settings import UnpackLimits
from workers.unpack import EntryKind, LayerEntry, LayerReader, Refusal

# Bump when what a LayerScan records (or how) changes: cached scans of an older analyzer are ignored.
ANALYZER_VERSION = "ls-4"

ELF_MAGIC = b"\x7fELF"
MAX_REFS_PER_FILE = 128
MAX_REF_SOURCE_BYTES = 64 << 10  # references are read from the first 64 KiB of a script
BINARY_DIRS = ("usr/bin/", "usr/sbin/", "bin/", "sbin/", "usr/local/bin/", "usr/local/sbin/", "usr/libexec/")
MAX_PACKAGE_DB_BYTES = 32 << 20  # a dpkg status file of a large image is a few MB
# Absolute paths in scripts and autostart files, e.g. "/usr/local/bin/start.sh" in "exec /usr/local/bin/start.sh".
_ABS_PATH = re.compile(rb"(?<![\w./-])(/(?:[\w.@+-]+/)*[\w.@+-]+)")
# Relative script names ("./run.sh", "dao.py") that an entrypoint or script runs from its own directory: found
# from their suffix (a literal the regex engine can search for) and widened back to the start of the word.
_SCRIPT_SUFFIX = re.compile(rb"\.(?:sh|py|pl|rb|js|bash)\b")
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@+-/")


def is_elf(content: bytes) -> bool:
    """True for ELF executables and shared objects."""
    return content[:4] == ELF_MAGIC


def is_script(content: bytes) -> bool:
    """A file that runs on its own: a shebang. (An entrypoint's ``python app.py`` is found from the config;
    reading references out of every module of an application tree would cost more than the scan itself.)"""
    return content[:2] == b"#!"


def script_references(content: bytes) -> tuple[str, ...]:
    """The absolute paths and relative script names a script or autostart file mentions (bounded)."""
    head = content[:MAX_REF_SOURCE_BYTES]
    seen: dict[str, None] = {}

    def add(ref: bytes) -> bool:
        seen.setdefault(ref.decode("utf-8", errors="replace"), None)
        return len(seen) >= MAX_REFS_PER_FILE

    for match in _ABS_PATH.finditer(head):
        if add(match.group(1)):
            return tuple(seen)
    for match in _SCRIPT_SUFFIX.finditer(head):
        start = match.start()
        while start > 0 and head[start - 1] in _WORD_BYTES:
            start -= 1
        end = match.end()
        if end < len(head) and head[end] in _WORD_BYTES:
            continue  # "x.py.bak", "run.sh-old": not a script name
        word = head[start:end]
        if not word.startswith(b"/") and add(word):  # absolute ones were found above
            break
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the image-level stage needs to know about one file of interest without its bytes."""

    kind: str  # "elf" | "script" | "other"
    md5: str | None  # of the whole content, where it is compared with a package database (see scan_layer)
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerScan:
    """Everything one layer yields, independent of the image; serialisable for the layer cache."""

    digest: Digest
    entries: tuple[LayerEntry, ...]
    hits: tuple[Finding, ...]  # file-scanner findings with path and evidence; no layer, step or platform yet
    facts: Mapping[str, FileFacts]  # path → facts, for executables, scripts and files with hits
    package_db: Mapping[str, PackageDbFile]  # path of a package-database file → what it says
    refusals: tuple[Refusal, ...] = ()
    errors: tuple[str, ...] = ()  # unpacking stopped early (limit, corrupt stream): the scan is partial
    error_rule: str | None = None  # "tollgate.unpack.limit" | "tollgate.unpack.corrupt" when errors is set
    files: int = 0
    scanned_bytes: int = 0
    diff_id: Digest | None = None
    cacheable: bool = True

    def to_cache(self) -> bytes:
        """Compressed JSON for the layer cache."""
        import json

        doc = {
            "v": ANALYZER_VERSION,
            "digest": self.digest,
            "entries": [
                [e.path, e.kind.value, e.size, e.mode, e.uid, e.gid, e.linkname, e.target] for e in self.entries
            ],
            "hits": [h.to_json() for h in self.hits],
            "facts": {p: [f.kind, f.md5, list(f.refs)] for p, f in self.facts.items()},
            "package_db": {p: d.to_json() for p, d in self.package_db.items()},
            "refusals": [[r.path, r.reason] for r in self.refusals],
            "errors": list(self.errors),
            "error_rule": self.error_rule,
            "files": self.files,
            "scanned_bytes": self.scanned_bytes,
            "diff_id": self.diff_id,
        }
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)

    @classmethod
    def from_cache(cls, blob: bytes) -> LayerScan | None:
        """Inverse of :meth:`to_cache`; None for a blob of another analyzer version or an unreadable one."""
        import json

        try:
            doc = json.loads(zlib.decompress(blob))
            if doc.get("v") != ANALYZER_VERSION:
                return None
            return cls(
                digest=parse_digest(doc["digest"]),
                entries=tuple(
                    LayerEntry(path=p, kind=EntryKind(k), size=s, mode=m, uid=u, gid=g, linkname=ln, target=t)
                    for p, k, s, m, u, g, ln, t in doc["entries"]
                ),
                hits=tuple(Finding.from_json(h) for h in doc["hits"]),
                facts={p: FileFacts(kind=k, md5=m, refs=tuple(r)) for p, (k, m, r) in doc["facts"].items()},
                package_db={p: PackageDbFile.from_json(d) for p, d in doc["package_db"].items()},
                refusals=tuple(Refusal(path=p, reason=r) for p, r in doc["refusals"]),
                errors=tuple(doc["errors"]),
                error_rule=doc.get("error_rule"),
                files=int(doc["files"]),
                scanned_bytes=int(doc["scanned_bytes"]),
                diff_id=parse_digest(doc["diff_id"]) if doc.get("diff_id") else None,
            )
        except (ValueError, KeyError, TypeError, zlib.error):
            return None  # a damaged cache entry is a miss, never a verdict


def _wants_facts(content: bytes, had_hits: bool, autostart: bool) -> str | None:
    """The kind of file worth remembering facts about, or None."""
    if is_elf(content):
        return "elf"
    if is_script(content) or autostart:
        return "script"
    return "other" if had_hits else None


def scan_layer(
    blob: BinaryIO,
    digest: Digest,
    *,
    file_scanners: Sequence[FileScanner],
    limits: UnpackLimits,
    is_autostart: Callable[[str], bool],
) -> LayerScan:
    """Stream one layer blob through the unpacker and the file scanners.

    ``is_autostart(path) -> bool`` names files read for references even without a shebang (crontabs, units).
    Integrity errors (bytes that do not match a digest) propagate: nothing from such a layer may be trusted.
    A limit breach or a corrupt stream ends the scan early; what was read is kept and the error recorded, and
    such a partial scan is not cached (a retry with other limits must see the layer again).
    """
    entries: list[LayerEntry] = []
    hits: list[Finding] = []
    facts: dict[str, FileFacts] = {}
    package_db: dict[str, PackageDbFile] = {}
    files = scanned_bytes = 0
    errors: list[str] = []
    error_rule: str | None = None
    reader = LayerReader(blob, limits=limits)
    try:
        for entry, content in reader:
            entries.append(entry)
            if entry.kind is not EntryKind.FILE or content is None:
                continue
            path = entry.path
            if is_package_db_path(path) and entry.size <= MAX_PACKAGE_DB_BYTES:
                parsed = parse_package_db_file(path, content)
                if parsed is not None:
                    package_db[path] = parsed
            if not content:
                continue
            files += 1
            scanned_bytes += len(content)
            ctx = FileContext(
                path=path,
                layer_index=0,
                layer_digest=digest,
                step=None,
                mode=entry.mode,
                size=entry.size,
                content=content,
            )
            found: list[Finding] = []
            for scanner in file_scanners:
                found.extend(scanner.scan_file(ctx))
            hits.extend(found)
            autostart = is_autostart(path)
            kind = _wants_facts(content, bool(found), autostart)
            if kind is None:
                continue
            # The md5 is compared with the package database: for files with hits (is this the package's own
            # content?), autostart files and programs in binary directories (was a package binary replaced?).
            # Libraries are left out: they are most of an image's ELF bytes and nothing runs them by name.
            wants_md5 = len(content) == entry.size and (bool(found) or autostart or path.startswith(BINARY_DIRS))
            facts[path] = FileFacts(
                kind=kind,
                md5=hashlib.md5(content, usedforsecurity=False).hexdigest() if wants_md5 else None,
                refs=script_references(content) if kind == "script" else (),
            )
            # Let go of this file before the reader fetches the next one (up to the scan cap, 64 MiB).
            del content, ctx
    except LimitExceeded as exc:
        errors.append(f"unpacking stopped: {exc}")
        error_rule = "tollgate.unpack.limit"
    except IntegrityError:
        raise
    except UnsafeArchiveError as exc:
        errors.append(f"unreadable layer: {exc}")
        error_rule = "tollgate.unpack.corrupt"
    complete = not errors
    return LayerScan(
        digest=digest,
        entries=tuple(entries),
        hits=tuple(hits),
        facts=facts,
        package_db=package_db,
        refusals=tuple(reader.refusals),
        errors=tuple(errors),
        error_rule=error_rule,
        files=files,
        scanned_bytes=scanned_bytes,
        diff_id=reader.stats.diff_id if complete else None,
        cacheable=complete,
    )


class LayerScanStore(Protocol):
    """The two store methods the layer cache needs (workers.store.Store has them)."""

    def get_layer_scan(self, digest: Digest, key: str) -> bytes | None:
        """Stored bytes, or None."""
        ...

    def put_layer_scan(self, digest: Digest, key: str, result: bytes) -> None:
        """Store bytes (idempotent)."""
        ...


class StoredLayerCache:
    """The pipeline's layer cache over the store, shared by every worker that reaches the database."""

    def __init__(self, store: LayerScanStore) -> None:
        self._store = store

    def get(self, digest: Digest, key: str) -> LayerScan | None:
        """A cached scan; entries of an older analyzer or damaged ones count as misses."""
        blob = self._store.get_layer_scan(digest, key)
        if blob is None:
            return None
        scan = LayerScan.from_cache(blob)
        return scan if scan is not None and scan.digest == digest else None

    def put(self, scan: LayerScan, key: str) -> None:
        """Store a complete scan."""
        self._store.put_layer_scan(scan.digest, key, scan.to_cache())
