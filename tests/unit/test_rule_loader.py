"""Strictness of the rule loader: every malformed rule file is refused with the file (and line) named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rules.loader import load_ruleset, ruleset_version
from workers.errors import RuleLoadError
from workers.settings import PROJECT_ROOT

GOOD_YARA = """rule demo_marker
{
    meta:
        id = "demo.marker"
        description = "test marker"
        severity = "high"
        confidence = "high"
        category = "miner"
        attack = "T1496"
    strings:
        $a = "tollgate-test-marker"
    condition:
        $a
}
"""

GOOD_HEURISTIC = """id: demo.env-marker
description: test heuristic
severity: medium
confidence: medium
category: miner
attack: T1496
when:
  contains: {field: env, value: MARKER}
samples:
  match: [{Env: ["MARKER=1"]}]
  benign: [{Env: ["PATH=/bin"]}]
"""


def _tree(tmp_path: Path, yara: str = GOOD_YARA, heuristic: str = GOOD_HEURISTIC) -> Path:
    root = tmp_path / "rules"
    (root / "yara").mkdir(parents=True)
    (root / "heuristics").mkdir()
    (root / "yara" / "demo.marker.yar").write_text(yara)
    (root / "heuristics" / "demo.env-marker.yaml").write_text(heuristic)
    for kind in ("match", "benign"):
        folder = root / "samples" / "demo.marker" / kind
        folder.mkdir(parents=True)
        (folder / "s.txt").write_text("tollgate-test-marker" if kind == "match" else "nothing")
    return root


def test_good_tree_loads(tmp_path: Path) -> None:
    ruleset = load_ruleset(_tree(tmp_path))
    assert set(ruleset.rules) == {"demo.marker", "demo.env-marker"}


@pytest.mark.parametrize(
    ("yara", "message"),
    [
        (GOOD_YARA.replace('attack = "T1496"', 'attack = "T1496"\n        colour = "red"'), "unknown meta keys"),
        (GOOD_YARA.replace('        attack = "T1496"\n', ""), "missing meta keys"),
        (GOOD_YARA.replace('"high"', '"extreme"', 1), "severity"),
        (GOOD_YARA.replace('category = "miner"', 'category = "fun"'), "category"),
        (GOOD_YARA.replace('attack = "T1496"', 'attack = "mining"'), "ATT&CK"),
        (GOOD_YARA.replace('id = "demo.marker"', 'id = "demo.other"'), "file name"),
        (GOOD_YARA.replace("$a\n}", "$b\n}"), "demo.marker.yar:"),
    ],
)
def test_bad_yara_is_refused(tmp_path: Path, yara: str, message: str) -> None:
    with pytest.raises(RuleLoadError, match=message.replace("(", r"\(")):
        load_ruleset(_tree(tmp_path, yara=yara))


@pytest.mark.parametrize(
    ("heuristic", "message"),
    [
        (GOOD_HEURISTIC + "colour: red\n", "unknown keys"),
        (GOOD_HEURISTIC.replace("contains:", "resembles:"), "unknown operator"),
        (GOOD_HEURISTIC.replace("field: env", "field: kernel"), "unknown field"),
        (
            GOOD_HEURISTIC.replace("contains: {field: env, value: MARKER}", "matches: {field: env, value: '(['}"),
            "bad regular expression",
        ),
        (GOOD_HEURISTIC.replace('  benign: [{Env: ["PATH=/bin"]}]\n', ""), "samples"),
        ("id: [unclosed\n", "demo.env-marker.yaml:"),
    ],
)
def test_bad_heuristic_is_refused(tmp_path: Path, heuristic: str, message: str) -> None:
    with pytest.raises(RuleLoadError, match=message):
        load_ruleset(_tree(tmp_path, heuristic=heuristic))


def test_missing_samples_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    shutil.rmtree(root / "samples" / "demo.marker" / "benign")
    with pytest.raises(RuleLoadError, match="benign"):
        load_ruleset(root)


def test_extra_pack_that_fails_to_compile_names_file_and_line(tmp_path: Path) -> None:
    pack = tmp_path / "ops.yar"
    pack.write_text("rule ok { condition: true }\n\nrule broken { condition: nonsense_identifier }\n")
    with pytest.raises(RuleLoadError, match=r"ops\.yar:3"):
        load_ruleset(_tree(tmp_path), [pack])


def test_extra_pack_rules_get_safe_defaults(tmp_path: Path) -> None:
    pack = tmp_path / "ops.yar"
    pack.write_text('rule Ops_Thing { strings: $a = "zzz" condition: $a }\n')
    ruleset = load_ruleset(_tree(tmp_path), [pack])
    meta = ruleset.rules["extra.ops-thing"]
    assert (meta.severity.value, meta.confidence.value, meta.category.value) == ("medium", "low", "pua")


def test_version_changes_with_any_rule_byte(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = ruleset_version(root)
    assert before == ruleset_version(root)
    (root / "yara" / "demo.marker.yar").write_text(GOOD_YARA + "\n")
    assert ruleset_version(root) != before


def test_shipped_rules_version_is_stamped() -> None:
    assert load_ruleset(PROJECT_ROOT / "rules").version == ruleset_version(PROJECT_ROOT / "rules")
