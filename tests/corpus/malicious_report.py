"""Vet the malicious corpus and print, per image, verdict, categories, deciding findings and what is missed.

.venv/bin/python -m tests.corpus.malicious_report [--rules DIR] [--json] [ID-SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.threats import ThreatImage, active, check_report, corpus, vet_all
from workers.domain import Finding, ScanReport
from workers.policy import is_verdict_relevant


def _finding_line(finding: Finding) -> str:
    where = finding.path or ("the image config" if finding.layer is None else "a layer")
    final = "" if finding.in_final_fs is None else f", in_final_fs={finding.in_final_fs}"
    return (
        f"{finding.rule} ({finding.severity.value}/{finding.confidence.value}, {finding.category.value}) "
        f"at {where}{final}"
    )


def _row(image: ThreatImage, report: ScanReport, problems: list[str], seconds: float) -> dict[str, Any]:
    findings = active(report)
    return {
        "id": image.id,
        "family": image.family,
        "image": f"{image.repository}:{image.tag}",
        "expected": {"verdict": image.verdict.value, "categories": sorted(c.value for c in image.categories)},
        "verdict": report.verdict.value,
        "categories": sorted({f.category.value for f in findings}),
        "explanation": report.explanation,
        "deciding": [_finding_line(f) for f in findings if is_verdict_relevant(f)],
        "problems": problems,
        "seconds": round(seconds, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; exit 1 when any image misses an expectation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, help="rules directory to measure instead of the shipped rules/")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument("only", nargs="*", help="vet only images whose id contains one of these")
    args = parser.parse_args(argv)

    images = [i for i in corpus() if not args.only or any(part in i.id for part in args.only)]
    rows = []
    started = last = time.monotonic()
    for image, report, built in vet_all(images, rules_dir=args.rules):
        now = time.monotonic()
        rows.append(_row(image, report, check_report(image, report, built), now - last))
        last = now
    total = time.monotonic() - started
    failed = [r for r in rows if r["problems"]]

    if args.json:
        json.dump({"images": rows, "passed": len(rows) - len(failed), "total": len(rows)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 1 if failed else 0
    for row in rows:
        status = "FAIL" if row["problems"] else "ok"
        print(f"[{status}] {row['id']}  {row['image']}  ({row['family']})")
        print(f"    expected  {row['expected']['verdict']}+ with {', '.join(row['expected']['categories'])}")
        print(f"    got       {row['verdict']} with {', '.join(row['categories']) or 'no categories'}")
        for line in row["deciding"]:
            print(f"      · {line}")
        for problem in row["problems"]:
            print(f"    MISSING   {problem}")
    print(f"\n{len(rows) - len(failed)}/{len(rows)} images meet every expectation ({total:.1f} s)")
    caught = sum(1 for r in rows if r["verdict"] != "clean")
    print(f"{caught}/{len(rows)} are not clean; {len(failed)} miss at least one expectation")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
