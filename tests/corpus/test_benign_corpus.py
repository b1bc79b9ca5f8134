"""Real Debian images (minbase, services, scanning tools, docker.io) vetted by the real pipeline come out clean."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.debian_image import rootfs_paths
from tests.corpus.images import CORPUS, BuiltImage, CorpusImage, blocking, build, describe, severity_counts, vet
from workers.domain import ScanReport, Severity, Verdict
from workers.settings import UnpackLimits

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# Far below what any of these roots holds (minbase alone: ~5,200 non-empty files, ~115 MB), far above what a
# scan that skipped a layer or stopped early would report.
MIN_FILES = 4000
MIN_BYTES = 90_000_000

Built = Callable[[CorpusImage], BuiltImage]
Vetted = Callable[[CorpusImage], tuple[BuiltImage, ScanReport]]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Write each corpus layout at most once per test process (the roots and their layers are cached on disk)."""
    directory = tmp_path_factory.mktemp("corpus")
    layouts: dict[CorpusImage, BuiltImage] = {}

    def get(image: CorpusImage) -> BuiltImage:
        if image not in layouts:
            layouts[image] = build(image, directory)
        return layouts[image]

    return get


@pytest.fixture(scope="session")
def vetted(built: Built) -> Vetted:
    """Vet each corpus image at most once per test process."""
    reports: dict[CorpusImage, ScanReport] = {}

    def get(image: CorpusImage) -> tuple[BuiltImage, ScanReport]:
        if image not in reports:
            reports[image] = vet(built(image))
        return built(image), reports[image]

    return get


def _layer_members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.getmembers()


def _expected_coverage(built: BuiltImage) -> tuple[int, int]:
    """Non-empty regular files in all layers, and their bytes up to the per-file scan cap."""
    cap = UnpackLimits().scan_file_bytes
    files = size = 0
    for layer in built.layers:
        for member in _layer_members(layer.data):
            if member.isreg() and member.size > 0:
                files += 1
                size += min(member.size, cap)
    return files, size


def _non_info(built: BuiltImage, report: ScanReport) -> str:
    lines = [describe(f, built) for f in report.findings if f.severity is not Severity.INFO]
    return "\n".join(["non-info findings:", *lines]) if lines else "no non-info findings"


@pytest.mark.parametrize("image", CORPUS, ids=[image.name for image in CORPUS])
def test_benign_image_is_clean(image: CorpusImage, vetted: Vetted) -> None:
    """The scan covered every file of every layer, and nothing it found makes the image suspicious."""
    built, report = vetted(image)
    assert report.digest == built.digest
    assert len(report.platforms) == 1
    platform = report.platforms[0]
    assert [layer.digest for layer in platform.layers] == [blob.digest for blob in built.layers]
    assert [layer.diff_id for layer in platform.layers] == [blob.diff_id for blob in built.layers]
    assert platform.history_aligned
    assert report.errors == ()
    files, size = _expected_coverage(built)
    assert files > MIN_FILES and size > MIN_BYTES
    assert (platform.files_scanned, platform.bytes_scanned) == (files, size), "the scan skipped files"

    counts = severity_counts(report)
    assert report.verdict is Verdict.CLEAN, (
        f"{image.name}: verdict {report.verdict.value} ({report.explanation}); findings by severity {counts}\n"
        + _non_info(built, report)
    )
    assert blocking(report) == [], _non_info(built, report)


@pytest.mark.parametrize("image", [image for image in CORPUS if image.layered], ids=lambda image: image.name)
def test_two_layer_image_holds_the_same_root(image: CorpusImage, built: Built) -> None:
    """minbase + the package delta (with its whiteouts) is the package root, path for path."""
    layout = built(image)
    base, delta = (_layer_members(layer.data) for layer in layout.layers)
    merged = {m.name: m for m in base}
    for member in delta:
        head, _, leaf = member.name.rpartition("/")
        if leaf.startswith(".wh."):
            gone = f"{head}/{leaf.removeprefix('.wh.')}" if head else leaf.removeprefix(".wh.")
            merged = {n: m for n, m in merged.items() if n != gone and not n.startswith(gone + "/")}
        else:
            merged[member.name] = member
    assert sorted(merged) == sorted(p.as_posix() for p in rootfs_paths(layout.root))
    root = layout.root
    for name, member in merged.items():
        if member.isreg():
            assert member.size == (root / name).lstat().st_size, name
        elif member.issym():
            assert member.linkname == str(Path(root / name).readlink()), name
