"""The rule harness: every rule compiles, matches each of its positive samples and none of its benign ones."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from rules.loader import Ruleset, load_ruleset
from tests.support.oci import FileSpec, tar_layer, write_image_layout
from tests.support.threats import NamedLayoutSource
from workers.domain import Confidence, Finding, sha256_digest
from workers.pipeline import Vetter, load_scanners
from workers.scanners.base import FileContext
from workers.scanners.heuristics import evaluate, fields_from_fragment
from workers.scanners.yara_scanner import YaraScanner
from workers.settings import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "rules"
RULESET = load_ruleset(RULES_DIR)
YARA_IDS = sorted(m.id for m in RULESET.rules.values() if m.kind == "yara")
HEURISTICS = {h.meta.id: h for h in RULESET.heuristics}
IOCS = {i.meta.id: i for i in RULESET.iocs}
SCANNER = YaraScanner(RULESET)


def _ctx(where: str, content: bytes) -> FileContext:
    return FileContext(
        path=where.lstrip("/"),
        layer_index=0,
        layer_digest=sha256_digest(b"layer"),
        step=None,
        mode=0o644,
        size=len(content),
        content=content,
    )


def _yara_findings(ruleset: Ruleset, path: Path, rule_id: str) -> list[Finding]:
    # A rule limited to certain paths sees its samples at the first such path; others at a neutral one (which no
    # rule's path_exclude names).
    include = ruleset.rules[rule_id].path_include
    where = include[0].replace("*", "") if include else f"samples/{path.name}"
    scanner = SCANNER if ruleset is RULESET else YaraScanner(ruleset)
    return scanner.scan_file(_ctx(where, path.read_bytes()))


def _yara_hits(ruleset: Ruleset, path: Path, rule_id: str) -> set[str]:
    return {f.rule for f in _yara_findings(ruleset, path, rule_id)}


def test_every_rule_is_loaded() -> None:
    on_disk = {p.stem for sub in ("yara", "heuristics", "iocs", "context") for p in (RULES_DIR / sub).glob("*.y*")}
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


def test_path_exclude_hands_host_keys_to_their_own_rule() -> None:
    key = (RULES_DIR / "samples" / "secret.private-key" / "match" / "id_ed25519").read_bytes()
    at_host_key = {f.rule for f in SCANNER.scan_file(_ctx("etc/ssh/ssh_host_ed25519_key", key))}
    assert at_host_key == {"secret.ssh-host-key"}
    assert {f.rule for f in SCANNER.scan_file(_ctx("root/.ssh/id_ed25519", key))} == {"secret.private-key"}


def test_every_rule_declares_an_honest_scope() -> None:
    # Artifacts are "file"; script idioms are "exec" (workers/correlate.py weighs them by execution context).
    exec_rules = {m.id for m in RULESET.rules.values() if m.kind == "yara" and m.scope.value == "exec"}
    assert "backdoor.reverse-shell-bash" in exec_rules
    assert "miner.xmrig-binary" not in exec_rules
    assert not any(m.id.startswith("secret.") for m in RULESET.rules.values() if m.id in exec_rules)


def _wallet_finding(name: str) -> Finding:
    sample = RULES_DIR / "samples" / "miner.monero-wallet" / "match" / name
    (finding,) = [f for f in _yara_findings(RULESET, sample, "miner.monero-wallet") if f.rule == "miner.monero-wallet"]
    return finding


@pytest.mark.parametrize("name", ["config.json", "subaddress.sh", "integrated.txt"])
def test_wallet_with_valid_checksum_keeps_confidence(name: str) -> None:
    finding = _wallet_finding(name)
    assert finding.confidence == RULESET.rules["miner.monero-wallet"].confidence
    assert "checksum valid" in finding.message
    assert finding.evidence and finding.evidence.startswith("checksum valid")


def test_wallet_with_invalid_checksum_is_low_confidence() -> None:
    finding = _wallet_finding("checksum-invalid.sh")
    assert finding.confidence == Confidence.LOW
    assert "checksum invalid" in finding.message


@pytest.mark.parametrize("rule_id", sorted(IOCS))
def test_ioc_list_samples(rule_id: str) -> None:
    ioc = IOCS[rule_id]
    for text in ioc.samples_match:
        hits = {f.rule for f in SCANNER.scan_file(_ctx("samples/ioc.txt", text.encode()))}
        assert rule_id in hits, f"{rule_id} missed {text!r}"
    for text in ioc.samples_benign:
        hits = {f.rule for f in SCANNER.scan_file(_ctx("samples/ioc.txt", text.encode()))}
        assert rule_id not in hits, f"{rule_id} fired on {text!r}"


def test_ioc_lists_name_every_source() -> None:
    for ioc in RULESET.iocs:
        assert ioc.indicators
        assert all(ind.source for ind in ioc.indicators)
        assert RULESET.rules[ioc.meta.id] is ioc.meta


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


FAKE_ELF_HEADER = b"\x7fELF\x02\x01\x01" + b"\0" * 57


def _sample_bytes(spec: object, layer: Mapping[str, object]) -> bytes:
    """A context-rule sample file's bytes: text or {elf|text}; 'md5-of:<path>' becomes that file's md5."""
    if isinstance(spec, str):
        spec = {"text": spec}
    assert isinstance(spec, dict)
    data = FAKE_ELF_HEADER + str(spec["elf"]).encode() if "elf" in spec else str(spec.get("text", "")).encode()

    def md5_of(match: re.Match[bytes]) -> bytes:
        return hashlib.md5(_sample_bytes(layer[match.group(1).decode()], layer)).hexdigest().encode()

    return re.sub(rb"md5-of:(\S+)", md5_of, data)


def _sample_file(spec: object, layer: Mapping[str, object]) -> bytes | FileSpec:
    if isinstance(spec, dict) and "symlink" in spec:
        return FileSpec.symlink(str(spec["symlink"]))
    mode = int(str(spec["mode"]), 0) if isinstance(spec, dict) and "mode" in spec else 0o644
    return FileSpec.file(_sample_bytes(spec, layer), mode)


def _vet_sample(tmp_path: Path, sample: dict[str, object]) -> set[str]:
    """Build a context-rule sample image and return the rule ids of its findings."""
    layers = []
    for layer in sample["layers"]:  # type: ignore[attr-defined]
        files = {path: _sample_file(spec, layer) for path, spec in layer.items()}
        layers.append(tar_layer(files))
    repository = str(sample.get("repository") or "samples/image")
    directory = tmp_path / repository.replace("/", "-")
    write_image_layout(directory, layers, config={"config": sample.get("config") or {}})
    source = NamedLayoutSource(directory, repository, "latest")
    report = Vetter(load_scanners(RULES_DIR)).vet(source, "latest")
    return {f.rule for f in report.findings}


@pytest.mark.parametrize("rule_id", sorted(r.meta.id for r in RULESET.context))
def test_context_rule_samples(rule_id: str, tmp_path: Path) -> None:
    rule = next(r for r in RULESET.context if r.meta.id == rule_id)
    for index, sample in enumerate(rule.samples_match):
        assert rule_id in _vet_sample(tmp_path / f"m{index}", dict(sample)), f"{rule_id} missed {sample.get('why')}"
    for index, sample in enumerate(rule.samples_benign):
        hits = _vet_sample(tmp_path / f"b{index}", dict(sample))
        assert rule_id not in hits, f"{rule_id} fired on benign {sample.get('why')}"


def test_every_derived_finding_has_its_rule() -> None:
    from workers.correlate import DERIVED_RULES

    assert set(DERIVED_RULES) == {r.meta.id for r in RULESET.context}
