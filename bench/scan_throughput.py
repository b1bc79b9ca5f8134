"""Scan throughput against the floor (decompress + sha256 of the same layers) and peak memory, on real images.

Each measurement runs in a fresh child process that reports its own peak RSS (``VmHWM``), so one run's heap
never shows up in another's figure. ``--big`` does the same on a ~1 GiB single-layer image built from the
Debian root (cached under var/bench).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bench.debian_image import BENCH_PACKAGES, CACHE, debian_layout, debootstrap, rootfs_paths, write_layout

ROOT = Path(__file__).resolve().parent.parent
BLOB_CHUNK = 1 << 20  # what the OCI layout source reads per step
BIG_NAME = "big-1g"
BIG_BUNDLE_BYTES = 96 << 20  # one file over the 64 MiB scan cap, made of real ELF files
MIB = 1 << 20


# ------------------------------------------------------------------------------------------- child processes


def _peak_rss() -> int:
    """This process's peak resident set (bytes), from the kernel's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _layer_blobs(layout: Path) -> list[Path]:
    """The layer blob files of the layout's only image, in order."""
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_digest.split(":", 1)[1]).read_text())
    return [blobs / layer["digest"].split(":", 1)[1] for layer in manifest["layers"]]


def child_floor(layout: Path, engine: str) -> dict[str, Any]:
    """The floor: gzip-decompress every layer blob and sha256 the uncompressed stream, nothing else."""
    module: Any = zlib
    if engine == "isal":
        from isal import isal_zlib

        module = isal_zlib
    elif engine == "zlib-ng":
        from zlib_ng import zlib_ng

        module = zlib_ng
    blobs = _layer_blobs(layout)
    start, cpu = time.perf_counter(), time.process_time()
    total = 0
    for path in blobs:
        digest = hashlib.sha256()
        decomp = module.decompressobj(16 + module.MAX_WBITS)
        with path.open("rb") as handle:
            while chunk := handle.read(BLOB_CHUNK):
                while chunk:
                    out = decomp.decompress(chunk)
                    digest.update(out)
                    total += len(out)
                    chunk = b""
                    if decomp.eof:  # another gzip member follows
                        chunk = decomp.unused_data
                        decomp = module.decompressobj(16 + module.MAX_WBITS)
        digest.hexdigest()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "bytes": total, "peak_rss": _peak_rss()}


def child_unpack(layout: Path) -> dict[str, Any]:
    """The unpacker alone: verified blob stream -> LayerReader entries and contents, nothing scanned."""
    from workers.domain import Digest
    from workers.settings import UnpackLimits
    from workers.sources import OciLayoutSource
    from workers.unpack import LayerReader

    source = OciLayoutSource(layout)
    start, cpu = time.perf_counter(), time.process_time()
    for path in _layer_blobs(layout):
        with source.open_blob(Digest("sha256:" + path.name)) as blob:
            for _entry in LayerReader(blob, limits=UnpackLimits()):
                pass
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "peak_rss": _peak_rss()}


def child_scan(layout: Path, profile: int) -> dict[str, Any]:
    """The whole pipeline: Vetter.vet over OciLayoutSource with the shipped rules (compiled beforehand)."""
    from workers.pipeline import Vetter, load_scanners
    from workers.sources import OciLayoutSource
    from workers.unpack import GZIP_ENGINE

    start = time.perf_counter()
    scanners = load_scanners(ROOT / "rules")
    compile_seconds = time.perf_counter() - start
    ready_rss = _rss()
    source = OciLayoutSource(layout)
    vetter = Vetter(scanners)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    report = vetter.vet(source, "")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(profile)
        print(text.getvalue(), file=sys.stderr)
    (platform,) = report.platforms
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_rss": _peak_rss(),
        "ready_rss": ready_rss,
        "compile_seconds": compile_seconds,
        "files": platform.files_scanned,
        "bytes_scanned": platform.bytes_scanned,
        "verdict": str(report.verdict),
        "findings": len(report.findings),
        "rules": sorted({finding.rule for finding in report.findings}),
        "errors": list(report.errors),
        "gzip_engine": GZIP_ENGINE,
    }


def run_child(kind: str, layout: Path, *, engine: str = "zlib", profile: int = 0) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its figures come back as one JSON line."""
    cmd = [sys.executable, "-m", "bench.scan_throughput", "--child", kind, "--layout", str(layout)]
    cmd += ["--engine", engine, "--profile", str(profile)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    if done.stderr:
        print(done.stderr, file=sys.stderr, end="")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------- the 1 GiB image


class _Hashing:
    """A write-only file that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.count += len(data)
        return self.sink.write(data)


class _Generated:
    """A read-only file over generated chunks (for tarfile.addfile without holding the content)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            more = next(self._chunks, b"")
            if not more:
                break
            self._buffer += more
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _elf_bundle(rootfs: Path, size: int) -> Iterator[bytes]:
    """``size`` bytes made of the root's real shared libraries and binaries, repeated as needed."""
    sources = [rootfs / rel for rel in rootfs_paths(rootfs) if rel.parts[:2] in (("usr", "lib"), ("usr", "bin"))]
    sources = [p for p in sources if p.is_file() and not p.is_symlink() and p.stat().st_size > 64 * 1024]
    left = size
    while left > 0:
        for path in sources:
            data = path.read_bytes()[:left]
            left -= len(data)
            yield data
            if left <= 0:
                return


def _random_bytes(size: int, seed: int) -> Iterator[bytes]:
    """Incompressible, reproducible content (like model weights or already-compressed assets)."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        step = min(MIB, left)
        left -= step
        yield rng.randbytes(step)


def _add_tree(tar: tarfile.TarFile, rootfs: Path, prefix: str) -> None:
    tar.inodes.clear()  # type: ignore[attr-defined]  # hard links only within one copy: a later copy's files must carry their bytes
    for rel in rootfs_paths(rootfs):
        path = rootfs / rel
        arcname = prefix + rel.as_posix()
        info = tar.gettarinfo(str(path), arcname=arcname)
        if info is None or info.isdev():
            continue
        info.mtime = 0
        info.uname = info.gname = ""
        if info.islnk():
            info.linkname = prefix + info.linkname.removeprefix(prefix)
        if info.isreg():
            with path.open("rb") as handle:
                tar.addfile(info, handle)
        else:
            tar.addfile(info)


def _add_generated(tar: tarfile.TarFile, name: str, size: int, chunks: Iterator[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    tar.addfile(info, _Generated(chunks))


def big_layout(target: int = 1 << 30) -> Path:
    """A cached single-layer image of about ``target`` uncompressed bytes: the Debian root, then copies of it
    under /srv/mirror-N/, a 96 MiB bundle of real ELF files and incompressible data to fill up; gzip -6."""
    layout = CACHE / f"{BIG_NAME}.oci"
    meta_path = layout / "tollgate-meta.json"
    if meta_path.exists():
        return layout
    rootfs = debootstrap(CACHE / "bookworm-bench", include=BENCH_PACKAGES)
    if layout.exists():
        shutil.rmtree(layout)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    partial = blobs / "layer.partial"
    print(f"building {layout} (~{target / 2**30:.1f} GiB uncompressed, gzip -6; once) ...", file=sys.stderr)
    with partial.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[call-overload]
            uncompressed = _Hashing(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                _add_tree(tar, rootfs, "")
                one_copy = uncompressed.count
                copy = 1
                while uncompressed.count + one_copy + BIG_BUNDLE_BYTES < target:
                    _add_tree(tar, rootfs, f"srv/mirror-{copy}/")
                    copy += 1
                _add_generated(tar, "opt/app/lib/bundle.bin", BIG_BUNDLE_BYTES, _elf_bundle(rootfs, BIG_BUNDLE_BYTES))
                rest = max(MIB, target - uncompressed.count - 64 * 1024)  # less the headers and the end blocks
                _add_generated(tar, "opt/app/model/weights.bin", rest, _random_bytes(rest, seed=1))
    digest = "sha256:" + compressed.sha256.hexdigest()
    partial.rename(blobs / digest.split(":", 1)[1])
    diff_id = "sha256:" + uncompressed.sha256.hexdigest()
    manifest_digest = write_layout(
        layout,
        None,
        digest,
        diff_id,
        tag="big",
        size=compressed.count,
        created_by=f"# Debian root x{copy}, an ELF bundle and incompressible data (bench/scan_throughput.py)",
    )
    meta = {"digest": manifest_digest, "size": compressed.count, "layer": digest, "uncompressed": uncompressed.count}
    meta_path.write_text(json.dumps(meta))
    return layout


# ------------------------------------------------------------------------------------------------- reporting


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def _summary(label: str, runs: list[dict[str, Any]], size: int) -> tuple[float, float, float]:
    """Print one line; return (best, median, best CPU) seconds."""
    times = [r["seconds"] for r in runs]
    best, median = min(times), statistics.median(times)
    cpu = min(r["cpu"] for r in runs)
    peak = max(r["peak_rss"] for r in runs)
    print(
        f"  {label:24s} best {best:6.2f} s ({_mb(size / best):>6s} MB/s)  median {median:6.2f} s "
        f"({_mb(size / median):>6s} MB/s)  CPU best {cpu:6.2f} s  peak RSS {peak / MIB:6.1f} MiB"
    )
    return best, median, cpu


def measure(layout: Path, runs: int, *, floors: tuple[str, ...], profile: int) -> None:
    """Interleave floor and scan runs (so background load hits both alike) and print the figures."""
    floor_runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in floors}
    unpack_runs: list[dict[str, Any]] = []
    scan_runs: list[dict[str, Any]] = []
    for _ in range(runs):
        for engine in floors:
            floor_runs[engine].append(run_child("floor", layout, engine=engine))
        unpack_runs.append(run_child("unpack", layout))
        scan_runs.append(run_child("scan", layout))
    if profile:  # an extra run: cProfile slows what it watches, so its time is not among the figures
        run_child("scan", layout, profile=profile)
    last = scan_runs[-1]
    size = floor_runs[floors[0]][0]["bytes"]  # the uncompressed layer bytes, as the floor counted them
    compressed = sum(path.stat().st_size for path in _layer_blobs(layout))
    print(
        f"{layout.name}: {_mb(compressed)} MB compressed, {_mb(size)} MB uncompressed; "
        f"{last['files']} files scanned ({_mb(last['bytes_scanned'])} MB); verdict {last['verdict']}, "
        f"{last['findings']} findings, {len(last['errors'])} errors; {runs} runs each, fresh process per run"
    )
    if last["rules"]:
        print(f"  finding rules: {', '.join(last['rules'])}")
    for error in last["errors"]:
        print(f"  error: {error}")
    results = {engine: _summary(f"floor ({engine})", floor_runs[engine], size) for engine in floors}
    _summary("unpack (no scanners)", unpack_runs, size)
    scan_best, scan_median, scan_cpu = _summary(f"scan (unpacker: {last['gzip_engine']})", scan_runs, size)
    for engine, (floor_best, floor_median, floor_cpu) in results.items():
        print(
            f"  ratio scan/floor ({engine}): {scan_best / floor_best:.2f} (best)  {scan_median / floor_median:.2f} "
            f"(median)  {scan_cpu / floor_cpu:.2f} (CPU)"
        )
    print(
        f"  scan process: {last['ready_rss'] / MIB:.1f} MiB resident after importing and compiling the rules "
        f"({last['compile_seconds'] * 1000:.0f} ms, not in the scan time)"
    )


def main() -> int:
    """Measure the Debian image (and, with --big, the 1 GiB layer)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big", action="store_true", help="measure the ~1 GiB single-layer image instead")
    parser.add_argument("--big-bytes", type=int, default=1 << 30, help=argparse.SUPPRESS)
    parser.add_argument("--floor", default="zlib,isal", help="comma-separated gzip engines for the floor")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile one more scan, print top N")
    parser.add_argument("--child", choices=("floor", "unpack", "scan"), help=argparse.SUPPRESS)
    parser.add_argument("--layout", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="zlib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "floor":
            result = child_floor(args.layout, args.engine)
        elif args.child == "unpack":
            result = child_unpack(args.layout)
        else:
            result = child_scan(args.layout, args.profile)
        print(json.dumps(result))
        return 0
    floors = tuple(engine for engine in args.floor.split(",") if engine and _importable(engine))
    layout = big_layout(args.big_bytes) if args.big else debian_layout()[0]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    measure(layout, args.runs, floors=floors, profile=args.profile)
    return 0


def _importable(engine: str) -> bool:
    module = {"zlib": "zlib", "isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng"}[engine]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
