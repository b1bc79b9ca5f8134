"""The rule harness: every rule compiles, matches each of its positive samples and none of its benign ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import Ruleset, load_ruleset
from workers.domain import sha256_digest
from workers.scanners.base import FileContext
from workers.scanners.heuristics import evaluate, fields_from_fragment
from workers.scanners.yara_scanner import YaraScanner
from workers.settings import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "rules"
RULESET = load_ruleset(RULES_DIR)
YARA_IDS = sorted(m.id for m in RULESET.rules.values() if m.kind == "yara")
HEURISTICS = {h.meta.id: h for h in RULESET.heuristics}


def _yara_hits(ruleset: Ruleset, path: Path, rule_id: str) -> set[str]:
    # A rule limited to certain paths sees its samples at the first such path; others at a neutral one.
    include = ruleset.rules[rule_id].path_include
    where = include[0].replace("*", "").lstrip("/") if include else f"samples/{path.name}"
    ctx = FileContext(
        path=where,
        layer_index=0,
        layer_digest=sha256_digest(b"layer"),
        step=None,
        mode=0o644,
        size=path.stat().st_size,
        content=path.read_bytes(),
    )
    return {f.rule for f in YaraScanner(ruleset).scan_file(ctx)}


def test_every_rule_is_loaded() -> None:
    on_disk = {p.stem for p in (RULES_DIR / "yara").glob("*.yar")} | {
        p.stem for p in (RULES_DIR / "heuristics").glob("*.yaml")
    }
    assert on_disk == set(RULESET.rules)
    assert RULESET.version.startswith("rs-")


@pytest.mark.parametrize("rule_id", YARA_IDS)
def test_yara_rule_matches_positive_samples(rule_id: str) -> None:
    samples = sorted((RULES_DIR / "samples" / rule_id / "match").iterdir())
    assert samples
    for sample in samples:
        assert rule_id in _yara_hits(RULESET, sample, rule_id), f"{rule_id} missed {sample.name}"


@pytest.mark.parametrize("rule_id", YARA_IDS)
def test_yara_rule_ignores_benign_samples(rule_id: str) -> None:
    samples = sorted((RULES_DIR / "samples" / rule_id / "benign").iterdir())
    assert samples
    for sample in samples:
        assert rule_id not in _yara_hits(RULESET, sample, rule_id), f"{rule_id} fired on benign {sample.name}"


def test_path_limited_rules_ignore_other_paths() -> None:
    sample = RULES_DIR / "samples" / "backdoor.ssh-key-root" / "match" / "authorized_keys"
    ctx = FileContext(
        path="usr/share/doc/openssh/example_authorized_keys",
        layer_index=0,
        layer_digest=sha256_digest(b"layer"),
        step=None,
        mode=0o644,
        size=sample.stat().st_size,
        content=sample.read_bytes(),
    )
    assert not YaraScanner(RULESET).scan_file(ctx)


@pytest.mark.parametrize("rule_id", sorted(HEURISTICS))
def test_heuristic_rule_samples(rule_id: str) -> None:
    rule = HEURISTICS[rule_id]
    for fragment in rule.samples_match:
        assert evaluate(rule.when, fields_from_fragment(fragment)) is not None, f"{rule_id} missed {fragment}"
    for fragment in rule.samples_benign:
        assert evaluate(rule.when, fields_from_fragment(fragment)) is None, f"{rule_id} fired on {fragment}"


def test_rules_md_is_up_to_date() -> None:
    from rules.docs import RULES_MD, render_rules_md

    assert RULES_MD.read_text(encoding="utf-8") == render_rules_md(RULESET), "run: python -m rules.docs"
