"""Declarative heuristics over the image config and build history (rules/heuristics/*.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.loader import Condition, HeuristicRule, Ruleset
from workers.domain import Finding, clip_evidence
from workers.oci import ImageConfig
from workers.scanners.base import ConfigContext, finding_for


def config_fields(
    config: ImageConfig, layer_steps: tuple[str | None, ...], config_steps: tuple[str, ...]
) -> dict[str, list[str]]:
    """Every field a heuristic may select, as a list of strings."""
    command = " ".join([*config.entrypoint, *config.cmd])
    return {
        "entrypoint": list(config.entrypoint),
        "cmd": list(config.cmd),
        "command": [command] if command else [],
        "env": list(config.env),
        "env_values": [e.partition("=")[2] for e in config.env],
        "labels": [f"{k}={v}" for k, v in config.labels.items()],
        "user": [config.user] if config.user else [],
        "history": [h.created_by for h in config.history if h.created_by],
        "layer_steps": [s for s in layer_steps if s],
        "config_steps": list(config_steps),
    }


def fields_from_fragment(fragment: Mapping[str, Any]) -> dict[str, list[str]]:
    """Fields of a rule sample: a config fragment like {"Cmd": [...], "Env": [...], "history": [...]}."""
    entrypoint = list(fragment.get("Entrypoint") or [])
    cmd = list(fragment.get("Cmd") or [])
    env = list(fragment.get("Env") or [])
    history = list(fragment.get("history") or [])
    labels = dict(fragment.get("Labels") or {})
    command = " ".join([*entrypoint, *cmd])
    return {
        "entrypoint": entrypoint,
        "cmd": cmd,
        "command": [command] if command else [],
        "env": env,
        "env_values": [e.partition("=")[2] for e in env],
        "labels": [f"{k}={v}" for k, v in labels.items()],
        "user": [fragment["User"]] if fragment.get("User") else [],
        "history": history,
        "layer_steps": history,
        "config_steps": [],
    }


def evaluate(condition: Condition, fields: Mapping[str, list[str]]) -> str | None:
    """The first value that satisfies ``condition`` (or "" for a match without one); None when it fails."""
    if condition.op == "any":
        for child in condition.children:
            hit = evaluate(child, fields)
            if hit is not None:
                return hit
        return None
    if condition.op == "all":
        first: str | None = ""
        for child in condition.children:
            hit = evaluate(child, fields)
            if hit is None:
                return None
            first = first or hit
        return first
    if condition.op == "not":
        return "" if evaluate(condition.children[0], fields) is None else None
    values = fields.get(condition.field or "", [])
    if condition.op == "exists":
        return values[0] if values else None
    for value in values:
        if condition.op == "matches" and condition.pattern is not None and condition.pattern.search(value):
            return value
        if condition.op == "contains" and condition.value is not None and condition.value in value:
            return value
        if condition.op == "equals" and value == condition.value:
            return value
    return None


class HeuristicScanner:
    """Runs every heuristic rule against one image config."""

    name = "heuristics"

    def __init__(self, ruleset: Ruleset) -> None:
        self._rules: tuple[HeuristicRule, ...] = ruleset.heuristics

    def scan_config(self, ctx: ConfigContext) -> list[Finding]:
        """Findings about the config, entrypoint, env and build steps."""
        fields = config_fields(ctx.config, ctx.layer_steps, ctx.config_steps)
        findings = []
        for rule in self._rules:
            hit = evaluate(rule.when, fields)
            if hit is None:
                continue
            step = hit if hit in fields["history"] else None
            findings.append(finding_for(rule.meta, step=step, evidence=clip_evidence(hit) if hit else None))
        return findings
