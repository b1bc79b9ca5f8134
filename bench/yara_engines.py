"""Compare yara-python and yara-x on the same rules and real files: compile time and scan throughput."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.debian_image import CACHE, debootstrap

ROOT = Path(__file__).resolve().parent.parent


def _rule_sources(rules_dir: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((rules_dir / "yara").glob("*.yar"))}


def _files(root: Path, limit_bytes: int) -> list[bytes]:
    """Regular files of a real Debian root filesystem, up to ``limit_bytes`` in total."""
    out: list[bytes] = []
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        out.append(data)
        total += len(data)
        if total >= limit_bytes:
            break
    return out


def main() -> int:
    """Print compile time and MB/s for each engine over the same files."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    sources = _rule_sources(args.rules)
    if not sources:
        print("no YARA rules found", file=sys.stderr)
        return 1
    rootfs = debootstrap(CACHE / "bookworm-minbase")
    files = _files(rootfs, args.mb * 1024 * 1024)
    size = sum(len(f) for f in files)
    print(f"{len(sources)} rules; {len(files)} files, {size / 1e6:.1f} MB from a Debian bookworm minbase root")

    import yara
    import yara_x

    start = time.perf_counter()
    compiled = yara.compile(sources=sources)
    compile_py = time.perf_counter() - start
    start = time.perf_counter()
    hits_py = sum(1 for data in files if compiled.match(data=data))
    scan_py = time.perf_counter() - start

    start = time.perf_counter()
    compiler = yara_x.Compiler()
    for name, text in sources.items():
        compiler.new_namespace(name)
        compiler.add_source(text)
    rules = compiler.build()
    scanner = yara_x.Scanner(rules)
    compile_x = time.perf_counter() - start
    start = time.perf_counter()
    hits_x = sum(1 for data in files if scanner.scan(data).matching_rules)
    scan_x = time.perf_counter() - start

    for name, comp, scan, hits in (
        ("yara-python", compile_py, scan_py, hits_py),
        ("yara-x", compile_x, scan_x, hits_x),
    ):
        print(f"{name:12s} compile {comp * 1000:7.1f} ms  scan {size / 1e6 / scan:8.1f} MB/s  files matched {hits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
