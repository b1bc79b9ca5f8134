"""YARA over file contents (yara-x), turning matches into attributed findings."""

from __future__ import annotations

import fnmatch
from typing import Any

from rules.loader import RuleMeta, Ruleset
from workers.domain import Finding, clip_evidence
from workers.scanners.base import FileContext

EVIDENCE_CONTEXT = 60  # bytes shown on each side of the first match


class YaraScanner:
    """Scans every regular file with the compiled ruleset; one finding per matching rule per file."""

    name = "yara"

    def __init__(self, ruleset: Ruleset) -> None:
        import yara_x

        self._ruleset = ruleset
        self._scanner: Any = yara_x.Scanner(ruleset.yara)
        self._scanner.set_timeout(60)

    def scan_file(self, ctx: FileContext) -> list[Finding]:
        """Findings for ``ctx``; empty files cost nothing."""
        if not ctx.content:
            return []
        results = self._scanner.scan(ctx.content)
        findings = []
        for match in results.matching_rules:
            rule_id = self._ruleset.yara_ids.get(f"{match.namespace}:{match.identifier}")
            meta = self._ruleset.rules.get(rule_id) if rule_id else None
            if meta is None or not _path_allowed(meta, ctx.path):
                continue
            findings.append(
                Finding(
                    rule=meta.id,
                    severity=meta.severity,
                    category=meta.category,
                    confidence=meta.confidence,
                    attack=meta.attack,
                    message=meta.description,
                    layer=ctx.layer_digest,
                    step=ctx.step,
                    path="/" + ctx.path,
                    evidence=_excerpt(ctx.content, match),
                )
            )
        return findings


def _path_allowed(meta: RuleMeta, path: str) -> bool:
    if not meta.path_include:
        return True
    full = "/" + path
    return any(fnmatch.fnmatch(full, glob) for glob in meta.path_include)


def _excerpt(content: bytes, match: Any) -> str:
    for pattern in match.patterns:
        for hit in pattern.matches:
            start = max(0, hit.offset - EVIDENCE_CONTEXT)
            end = min(len(content), hit.offset + hit.length + EVIDENCE_CONTEXT)
            return clip_evidence(content[start:end].strip())
    return clip_evidence(content[:120])
