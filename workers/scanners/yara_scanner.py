"""YARA over file contents (yara-x), turning matches into attributed findings."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable
from typing import Any

from rules.loader import RuleMeta, Ruleset
from workers.domain import Confidence, Finding, clip_evidence
from workers.scanners.base import ConfigContext, FileContext, finding_for
from workers.scanners.wallets import monero_checksum_valid

EVIDENCE_CONTEXT = 60  # bytes shown on each side of the first match
_BASE58_RUN = re.compile(rb"[1-9A-HJ-NP-Za-km-z]{95,106}")

# Checks named by a rule's `validate` meta (rules.loader.VALIDATORS), each over one matched string.
VALIDATORS: dict[str, Callable[[bytes], bool]] = {
    # A match may carry a boundary character around the address; the checksum is over the base58 run itself.
    "monero-address": lambda data: any(monero_checksum_valid(m.group()) for m in _BASE58_RUN.finditer(data)),
}


class YaraScanner:
    """Scans every regular file with the compiled ruleset; one finding per matching rule per file."""

    name = "yara"

    def __init__(self, ruleset: Ruleset) -> None:
        import yara_x

        self._ruleset = ruleset
        self._scanner: Any = yara_x.Scanner(ruleset.yara)
        self._scanner.set_timeout(60)
        self._scoped: Any = None
        self._scoped_paths: re.Pattern[str] | None = None
        if ruleset.yara_path_scoped is not None:
            self._scoped = yara_x.Scanner(ruleset.yara_path_scoped)
            self._scoped.set_timeout(60)
            globs = {g for meta in ruleset.rules.values() for g in meta.path_include}
            # One regex for every path_include glob: a path no scoped rule covers costs one match call.
            self._scoped_paths = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in sorted(globs)))

    def _matches(self, ctx: FileContext) -> list[Any]:
        matches = list(self._scanner.scan(ctx.content).matching_rules)
        if self._scoped_paths is not None and self._scoped_paths.match("/" + ctx.path):
            matches += self._scoped.scan(ctx.content).matching_rules
        return matches

    def scan_file(self, ctx: FileContext) -> list[Finding]:
        """Findings for ``ctx``; empty files cost nothing."""
        if not ctx.content:
            return []
        findings = []
        for match in self._matches(ctx):
            rule_id = self._ruleset.yara_ids.get(f"{match.namespace}:{match.identifier}")
            meta = self._ruleset.rules.get(rule_id) if rule_id else None
            if meta is None or not _path_allowed(meta, ctx.path):
                continue
            finding = finding_for(
                meta,
                layer=ctx.layer_digest,
                step=ctx.step,
                path="/" + ctx.path,
                evidence=_excerpt(ctx.content, match),
            )
            if meta.validate:
                finding = _validated(finding, meta.validate, ctx.content, match)
            findings.append(finding)
        return findings


def _validated(finding: Finding, validator: str, content: bytes, match: Any) -> Finding:
    """Keep the rule's confidence when a matched string passes its check; otherwise report it at low confidence."""
    check = VALIDATORS[validator]
    for pattern in match.patterns:
        for hit in pattern.matches:
            if check(content[hit.offset : hit.offset + hit.length]):
                return dataclasses.replace(
                    finding,
                    message=f"{finding.message} (checksum valid)",
                    evidence=clip_evidence("checksum valid: " + _window(content, hit.offset, hit.length)),
                )
    # Shaped like the real thing but failing its checksum: a placeholder, a typo or random text; still worth a look.
    return dataclasses.replace(
        finding,
        confidence=Confidence.LOW,
        message=f"{finding.message} (checksum invalid)",
        evidence=clip_evidence(f"checksum invalid: {finding.evidence}"),
    )


def _path_allowed(meta: RuleMeta, path: str) -> bool:
    full = "/" + path
    if any(fnmatch.fnmatchcase(full, glob) for glob in meta.path_exclude):
        return False
    if not meta.path_include:
        return True
    return any(fnmatch.fnmatchcase(full, glob) for glob in meta.path_include)


def _window(content: bytes, offset: int, length: int) -> str:
    start = max(0, offset - EVIDENCE_CONTEXT)
    end = min(len(content), offset + length + EVIDENCE_CONTEXT)
    return clip_evidence(content[start:end].strip())


def _excerpt(content: bytes, match: Any) -> str:
    for pattern in match.patterns:
        for hit in pattern.matches:
            return _window(content, hit.offset, hit.length)
    return clip_evidence(content[:120])


class ConfigIndicatorScanner:
    """IOC lists over the image config: a known C2 address in the CMD is as telling as one in a file."""

    name = "config-indicators"

    def __init__(self, ruleset: Ruleset) -> None:
        import yara_x

        self._ruleset = ruleset
        self._scanner: Any = yara_x.Scanner(ruleset.yara)

    def scan_config(self, ctx: ConfigContext) -> list[Finding]:
        """One finding per IOC list whose indicator appears in the command, environment or a build step."""
        config = ctx.config
        parts: list[tuple[str, str | None]] = [(" ".join([*config.entrypoint, *config.cmd]), None)]
        parts += [(env, None) for env in config.env]
        parts += [(h.created_by, h.created_by) for h in config.history if h.created_by]
        findings: dict[str, Finding] = {}
        for text, step in parts:
            data = text.encode("utf-8", errors="replace")
            for match in self._scanner.scan(data).matching_rules:
                rule_id = self._ruleset.yara_ids.get(f"{match.namespace}:{match.identifier}")
                meta = self._ruleset.rules.get(rule_id) if rule_id else None
                if meta is None or meta.kind != "ioc" or meta.id in findings:
                    continue
                findings[meta.id] = finding_for(
                    meta,
                    message=f"{meta.description} (in the image config)",
                    step=step,
                    evidence=_excerpt(data, match),
                )
        return list(findings.values())
