"""What each YARA rule file and each of its strings costs yara-x over real files (for rule authors).

A string whose best literal is short and common (``sh\\s``), or a ``nocase`` alternation of many words, can cost
several times more than the rest of a rule file; this prints the offenders so a new rule can be written so it
does not slow every scan. The figures are seconds over the same files, so compare them with each other.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from bench.debian_image import CACHE, debootstrap
from bench.yara_engines import ROOT, _files

_STRING = re.compile(r"^\s*(\$\w+)\s*=\s*(.+?)\s*$", re.MULTILINE)


def _cost(source: str, files: list[bytes]) -> float:
    import yara_x

    compiler = yara_x.Compiler()
    compiler.add_source(source)
    scanner = yara_x.Scanner(compiler.build())
    start = time.perf_counter()
    for data in files:
        scanner.scan(data)
    return time.perf_counter() - start


def main() -> int:
    """Print the costliest rule files and strings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=Path, default=ROOT / "rules")
    parser.add_argument("--mb", type=int, default=40)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    files = _files(debootstrap(CACHE / "bookworm-minbase"), args.mb * 1024 * 1024)
    print(f"{len(files)} files, {sum(map(len, files)) / 1e6:.1f} MB from a Debian bookworm minbase root")
    baseline = _cost('rule baseline { strings: $a = "tollgate-baseline-literal" condition: $a }', files)
    print(f"baseline (one rare literal): {baseline:.3f} s")
    per_file: list[tuple[float, str]] = []
    per_string: list[tuple[float, str]] = []
    for path in sorted((args.rules / "yara").glob("*.yar")):
        text = path.read_text(encoding="utf-8")
        per_file.append((_cost(text, files), path.stem))
        for match in _STRING.finditer(text.split("condition:", 1)[0]):
            name, value = match.groups()
            source = f"rule one {{ strings: $a = {value} condition: $a }}"
            per_string.append((_cost(source, files), f"{path.stem} {name}"))
    for title, rows in (("rule files", per_file), ("strings", per_string)):
        print(f"\ncostliest {title} (seconds over the same files):")
        for seconds, label in sorted(rows, reverse=True)[: args.top]:
            print(f"  {seconds:6.3f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
