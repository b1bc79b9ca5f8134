"""Print the benign corpus results as Markdown for the issue: verdicts, findings by severity, and each finding."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.corpus.images import CORPUS, BuiltImage, build, owner, severity_counts, vet, weight
from workers.domain import ScanReport, Severity


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def render(results: list[tuple[BuiltImage, ScanReport, float]]) -> str:
    """The summary table, every finding per image (non-info first), and the distinct rule hits."""
    severities = [s.value for s in Severity]
    rulesets = sorted({report.ruleset for _, report, _ in results})
    lines = [
        f"Ruleset {', '.join(rulesets)} at commit {_commit()}. Info findings are rule hits the context stage "
        "downgraded; they are listed too, so every benign file that trips a rule is visible.",
        "",
        "| image | layers | files scanned | MB scanned | vet s | verdict | " + " | ".join(severities) + " |",
        "|---" * (6 + len(severities)) + "|",
    ]
    for built, report, seconds in results:
        platform = report.platforms[0]
        counts = severity_counts(report)
        lines.append(
            f"| {built.image.name} | {len(built.layers)} | {platform.files_scanned} | "
            f"{platform.bytes_scanned / 1e6:.1f} | {seconds:.1f} | **{report.verdict.value}** | "
            + " | ".join(str(counts[s]) for s in severities)
            + " |"
        )
    distinct: dict[tuple[str, str], list[str]] = {}
    details: dict[tuple[str, str], str] = {}
    for built, report, _ in results:
        lines += ["", f"### {built.image.name}: {report.verdict.value} ({report.explanation})", ""]
        if not report.findings:
            lines.append("No findings.")
            continue
        lines += [
            "| rule | severity / confidence | rolls up to | path | layer | owner | evidence |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in sorted(report.findings, key=lambda f: (-f.severity.rank, f.rule, f.path or "")):
            layer = next((str(i) for i, blob in enumerate(built.layers) if blob.digest == f.layer), "-")
            who = owner(built.root, f.path)
            lines.append(
                f"| `{f.rule}` | {f.severity.value} / {f.confidence.value} | {weight(f).value} | "
                f"`{f.path or '(config)'}` | {layer} | {_cell(who)} | `{_cell(f.evidence or '')}` |"
            )
            key = (f.rule, f.path or "(config)")
            distinct.setdefault(key, []).append(built.image.name)
            details[key] = (
                f"{f.severity.value}/{f.confidence.value} → {weight(f).value}; owner {who}; {f.message}"
            )
    lines += ["", "### Distinct rule hits on benign files (rule, path → images)", ""]
    if not distinct:
        lines.append("None.")
    for (rule, path), images in sorted(distinct.items()):
        lines.append(f"- `{rule}` on `{path}` ({details[rule, path]}): {', '.join(images)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build (from the cached roots), vet and report every corpus image, or those named."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*", help="corpus image names (default: all)")
    args = parser.parse_args(argv)
    wanted = [image for image in CORPUS if not args.images or image.name in args.images]
    if not wanted:
        parser.error(f"no such corpus image; known: {', '.join(image.name for image in CORPUS)}")
    results: list[tuple[BuiltImage, ScanReport, float]] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-corpus-") as tmp:
        for image in wanted:
            built = build(image, Path(tmp))
            start = time.perf_counter()
            report = vet(built)
            results.append((built, report, time.perf_counter() - start))
            print(f"vetted {image.name}: {report.verdict.value}", file=sys.stderr)
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
