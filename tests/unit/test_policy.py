"""Unit tests for the policy file loader, per-repository matching and the verdict rollup with its explanation."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers.cli import main
from workers.domain import Action, Category, Confidence, Finding, Severity, Verdict
from workers.errors import ConfigError
from workers.policy import (
    EXPLANATION_LIMIT,
    Policy,
    PolicyEntry,
    cached_policy,
    decide,
    load_policy,
    parse_policy,
    rollup,
)


def _finding(
    rule: str = "t.rule",
    severity: Severity = Severity.CRITICAL,
    confidence: Confidence = Confidence.HIGH,
    category: Category = Category.MINER,
    *,
    path: str | None = None,
    waived: bool = False,
) -> Finding:
    return Finding(
        rule=rule,
        severity=severity,
        category=category,
        message="m",
        confidence=confidence,
        path=path,
        waived=waived,
    )


OPEN_MINER = _finding("miner.xmrig-config", category=Category.PUA, path="/opt/x/config.json")
LOOK_ALIKE = _finding("names.look-alike", Severity.MEDIUM, Confidence.LOW, Category.PUA)

EXAMPLE = """\
version: 1
default:
  actions: {clean: allow, suspicious: warn, malicious: quarantine}
  block_categories: []
repositories:
  - match: "prod/**"
    actions: {suspicious: quarantine}
    block_categories: [pua]
  - match: "prod/sandbox/*"
    actions: {suspicious: allow}
  - match: "team/*"
    block_categories: [secret]
"""


# ------------------------------------------------------------------------------------------------ loader


def test_readme_example_policy_loads() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Policy file", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    policy = parse_policy(example.group(1), "README.md")
    assert policy.for_repository("prod/app").block_categories == {Category.PUA}
    assert policy.for_repository("team/app").block_categories == {Category.SECRET}


def test_example_policy_loads() -> None:
    policy = parse_policy(EXAMPLE, "p.yaml")
    assert [e.match for e in policy.repositories] == ["prod/**", "prod/sandbox/*", "team/*"]
    assert policy.source == "p.yaml"
    assert parse_policy("version: 1\n").for_repository("x").actions == Policy().for_repository("x").actions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"p\.yaml: is empty"),
        ("- version: 1\n", r"p\.yaml:1: must be a mapping, got a list"),
        ("version: [1\n", r"p\.yaml:\d+: invalid YAML"),
        ("version: 1\ndefault:\n\tactions: {}\n", r"p\.yaml:3: invalid YAML"),
        ("default: {}\n", r"p\.yaml:1: version: required"),
        ("version: 2\n", r"p\.yaml:1: version: 2 is not supported"),
        ("version: '1'\n", r"version: '1' is not supported"),
        ("version: true\n", r"version: True is not supported"),
        ("version: 1.0\n", r"version: 1.0 is not supported"),
        ("version: 1\nversion: 1\n", r"p\.yaml:2: duplicate key 'version'"),
        ("version: 1\nrules: []\n", r"p\.yaml:2: rules: unknown key"),
        ("version: 1\n1: x\n", r"p\.yaml:2: key 1 must be a string"),
        ("version: 1\ndefault: []\n", r"p\.yaml:2: default: must be a mapping, got a list"),
        ("version: 1\ndefault:\n  action: {}\n", r"p\.yaml:3: default\.action: unknown key"),
        ("version: 1\ndefault:\n  actions: allow\n", r"p\.yaml:3: default\.actions: must be a mapping"),
        (
            "version: 1\ndefault:\n  actions:\n    suspicious: block\n",
            r"p\.yaml:4: default\.actions\.suspicious: 'block' is not an action; expected one of allow, warn, quar",
        ),
        ("version: 1\ndefault:\n  actions: {bad: warn}\n", r"p\.yaml:3: default\.actions\.bad: unknown key"),
        ("version: 1\ndefault:\n  block_categories: pua\n", r"default\.block_categories: must be a list"),
        (
            "version: 1\ndefault:\n  block_categories:\n    - pua\n    - adware\n",
            r"p\.yaml:5: default\.block_categories\[1\]: 'adware' is not a category",
        ),
        (
            "version: 1\ndefault:\n  signatures: {unsigned: block}\n",
            r"p\.yaml:3: default\.signatures\.unsigned: 'block' is not an action",
        ),
        (
            "version: 1\nrepositories:\n  - match: a/*\n    signatures: {require: true}\n",
            r"p\.yaml:4: repositories\[0\]\.signatures\.require: unknown key",
        ),
        (
            "version: 1\ndefault:\n  signatures: {required: true}\n",
            r"p\.yaml:3: default\.signatures: required: true needs keys, identities or notation identities",
        ),
        ("version: 1\nrepositories: {}\n", r"p\.yaml:2: repositories: must be a list, got a mapping"),
        ("version: 1\nrepositories:\n  - prod/**\n", r"p\.yaml:3: repositories\[0\]: must be a mapping, got str"),
        ("version: 1\nrepositories:\n  - actions: {}\n", r"p\.yaml:3: repositories\[0\]\.match: required"),
        ("version: 1\nrepositories:\n  - match: ''\n", r"p\.yaml:3: repositories\[0\]\.match: '': must not be empty"),
        ("version: 1\nrepositories:\n  - match: 5\n", r"repositories\[0\]\.match: must be a string, got int"),
        ("version: 1\nrepositories:\n  - match: 'prod**'\n", r"match: 'prod\*\*': '\*\*' must be a whole path"),
        ("version: 1\nrepositories:\n  - match: 'prod//x'\n", r"match: 'prod//x': has an empty path component"),
        ("version: 1\nrepositories:\n  - match: '/prod'\n", r"has an empty path component"),
        ("version: 1\nrepositories:\n  - match: 'Prod/*'\n", r"match: 'Prod/\*': has 'P'; repository names"),
        ("version: 1\nrepositories:\n  - match: 'prod/[ab]'\n", r"has '\['"),
        (
            "version: 1\nrepositories:\n  - match: a\n  - match: b\n    colour: red\n",
            r"p\.yaml:5: repositories\[1\]\.colour: unknown key",
        ),
        (
            "version: 1\ndefault:\n  actions: {suspicious: quarantine, malicious: warn}\n",
            r"default\.actions: malicious: warn is milder than suspicious: quarantine",
        ),
        (
            # inherited: the entry's allow for malicious is milder than default's warn for suspicious
            "version: 1\nrepositories:\n  - match: x/*\n    actions: {malicious: allow}\n",
            r"p\.yaml:3: repositories\[0\]\.actions: malicious: allow is milder than suspicious: warn",
        ),
    ],
)
def test_loader_refuses_bad_input(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        parse_policy(text, "p.yaml")
    assert str(caught.value).startswith("policy file p.yaml")


def test_load_policy_names_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"policy file {missing}: cannot read it: No such file"):
        load_policy(missing)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_policy(tmp_path)  # a directory
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(ConfigError, match=rf"policy file {binary}: not UTF-8"):
        load_policy(binary)
    if os.geteuid() != 0:  # root reads through permissions
        locked = tmp_path / "locked.yaml"
        locked.write_text("version: 1\n")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="cannot read it: Permission denied"):
            load_policy(locked)


def test_cached_policy_reloads_on_change_and_never_keeps_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    first = cached_policy(path)
    assert cached_policy(path) is first
    path.write_text("version: 1\ndefault:\n  block_categories: [pua]\n")
    os.utime(path, ns=(1, 1_700_000_000_000_000_000))
    second = cached_policy(path)
    assert second is not first
    assert second.block_categories == {Category.PUA}
    path.write_text("version: 1\nnope: 1\n")
    with pytest.raises(ConfigError, match="nope: unknown key"):
        cached_policy(path)
    with pytest.raises(ConfigError, match="nope: unknown key"):
        cached_policy(path)
    assert cached_policy(None) == Policy()


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_services_refuse_to_start_on_a_bad_policy(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\ndefault:\n  actions: {suspicious: block}\n")
    for key in list(os.environ):
        if key.startswith("TOLLGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(path))
    assert main([command]) == 2
    assert f"policy file {path}:3: default.actions.suspicious: 'block' is not an action" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("team/*", ["team/app", "team/a-b.c"], ["team", "team/app/api", "other/app", "xteam/app"]),
        ("team/**", ["team/app", "team/app/api", "team/a/b/c"], ["team", "teams/app", "other/team/app"]),
        ("**/cache", ["cache", "a/cache", "a/b/cache"], ["cache2", "a/cache/x", "a/mycache"]),
        ("team/**/api", ["team/api", "team/x/api", "team/x/y/api"], ["team/apix", "team/x/api/v2"]),
        ("**", ["app", "a/b/c"], []),
        ("app-?", ["app-1", "app-x"], ["app-", "app-10", "app-/x"]),
        ("*/web*", ["a/web", "b/webshop"], ["web", "a/b/web", "a/myweb"]),
        ("exact/name", ["exact/name"], ["exact/name2", "exact"]),
        ("a.b/c", ["a.b/c"], ["axb/c"]),  # '.' is literal, not a regex wildcard
    ],
)
def test_glob_semantics(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    entry = PolicyEntry(match=pattern)
    for name in matching:
        assert entry.matches(name), (pattern, name)
    for name in not_matching:
        assert not entry.matches(name), (pattern, name)


def test_first_match_wins_and_entries_inherit_from_default() -> None:
    policy = parse_policy(
        """\
version: 1
default:
  actions: {clean: warn}
  block_categories: [secret]
repositories:
  - match: "prod/sandbox/*"
    actions: {suspicious: allow, clean: allow}
    block_categories: []
  - match: "prod/**"
    actions: {suspicious: quarantine}
    block_categories: [pua]
  - match: "prod/api"
    actions: {malicious: warn}
""",
        "p.yaml",
    )
    sandbox = policy.for_repository("prod/sandbox/try")
    assert sandbox.match == "prod/sandbox/*"
    assert sandbox.actions == {
        Verdict.CLEAN: Action.ALLOW,
        Verdict.SUSPICIOUS: Action.ALLOW,
        Verdict.MALICIOUS: Action.QUARANTINE,  # inherited from the built-in default through default
    }
    assert sandbox.block_categories == frozenset()  # [] replaces default's list

    api = policy.for_repository("prod/api")  # the later, more specific entry is never reached
    assert api.match == "prod/**"
    assert api.action_for(Verdict.MALICIOUS) is Action.QUARANTINE
    assert api.actions[Verdict.CLEAN] is Action.WARN  # from default
    assert api.block_categories == {Category.PUA}  # replaces, does not add to, default's [secret]

    other = policy.for_repository("team/app")
    assert other.match is None
    assert other.block_categories == {Category.SECRET}
    assert policy.action_for(Verdict.CLEAN, "team/app") is Action.WARN
    assert other.to_json() == {
        "match": None,
        "actions": {"clean": "warn", "suspicious": "warn", "malicious": "quarantine"},
        "block_categories": ["secret"],
    }


# ------------------------------------------------------------------------------------------------ rollup


def test_secret_and_pua_are_at_most_suspicious_unless_other_categories_decide_more() -> None:
    secret = _finding("secret.aws-key", category=Category.SECRET, path="/app/.env")
    assert rollup([secret])[0] is Verdict.SUSPICIOUS
    assert rollup([OPEN_MINER])[0] is Verdict.SUSPICIOUS
    backdoor = _finding("backdoor.reverse-shell-bash", category=Category.BACKDOOR, path="/start.sh")
    verdict, explanation = rollup([OPEN_MINER, secret, backdoor])
    assert verdict is Verdict.MALICIOUS
    assert explanation.startswith("malicious: backdoor.reverse-shell-bash (critical, backdoor) at /start.sh")
    assert "miner.xmrig-config" not in explanation  # it did not decide malicious


def test_integrity_findings_are_at_least_suspicious() -> None:
    refused = _finding("tollgate.unpack.refused-entry", Severity.LOW, Confidence.LOW, Category.INTEGRITY, path="/x")
    verdict, explanation = rollup([refused])
    assert verdict is Verdict.SUSPICIOUS
    assert "integrity findings count as suspicious at least" in explanation
    assert rollup([_finding(category=Category.INTEGRITY)])[0] is Verdict.MALICIOUS  # a floor, not a cap


def test_waived_findings_never_count_but_are_reported() -> None:
    waived = _finding("miner.xmrig-binary", path="/usr/bin/x", waived=True)
    verdict, explanation = rollup([waived])
    assert verdict is Verdict.CLEAN
    assert explanation == "clean: every finding is waived; waived, not counted: miner.xmrig-binary"
    decision = decide([waived], "prod/app", parse_policy(EXAMPLE))
    assert decision.action is Action.ALLOW
    minor = _finding("history.fetch-and-exec", Severity.LOW, Confidence.LOW, Category.BACKDOOR)
    assert rollup([minor, waived])[1] == (
        "clean: no finding reaches suspicious (1 minor: history.fetch-and-exec); "
        "waived, not counted: miner.xmrig-binary"
    )
    assert rollup([]) == (Verdict.CLEAN, "clean: no findings")


def test_block_categories_quarantine_pua_only_where_policy_says() -> None:
    policy = parse_policy(EXAMPLE, "p.yaml")
    blocked = decide([OPEN_MINER], "prod/app", policy)
    assert (blocked.verdict, blocked.action) == (Verdict.SUSPICIOUS, Action.QUARANTINE)
    assert blocked.blocked_categories == (Category.PUA,)
    assert blocked.policy is not None
    assert blocked.policy.match == "prod/**"
    assert blocked.explanation == (
        "suspicious: miner.xmrig-config (critical, pua) at /opt/x/config.json "
        "(pua findings count as suspicious at most); quarantined: policy for prod/** blocks pua (miner.xmrig-config)"
    )
    allowed = decide([OPEN_MINER], "dev/app", policy)
    assert (allowed.verdict, allowed.action, allowed.blocked_categories) == (Verdict.SUSPICIOUS, Action.WARN, ())
    assert "quarantined" not in allowed.explanation


def test_block_categories_ignore_waived_and_below_threshold_findings() -> None:
    policy = parse_policy(EXAMPLE, "p.yaml")
    # a look-alike name alone is not verdict-relevant (medium, low confidence): context, never a block
    assert decide([LOOK_ALIKE], "prod/ubuntu1", policy).action is Action.ALLOW
    waived_miner = _finding("miner.xmrig-config", category=Category.PUA, waived=True)
    assert decide([waived_miner], "prod/app", policy).action is Action.ALLOW
    default_block = Policy(block_categories=frozenset({Category.SECRET}))
    decision = decide([_finding("secret.key", category=Category.SECRET)], "any/repo", default_block)
    assert decision.action is Action.QUARANTINE
    assert "quarantined: policy by default blocks secret (secret.key)" in decision.explanation


def test_repository_actions_apply_to_the_verdict() -> None:
    policy = parse_policy(EXAMPLE, "p.yaml")
    suspicious = _finding("defense-evasion.history-wipe", Severity.MEDIUM, Confidence.MEDIUM, Category.DEFENSE_EVASION)
    assert decide([suspicious], "prod/app", policy).action is Action.QUARANTINE
    assert decide([suspicious], "prod/sandbox/x", policy).action is Action.QUARANTINE  # prod/** listed first
    assert decide([suspicious], "team/app", policy).action is Action.WARN
    assert decide([suspicious], "team/app").action is Action.WARN  # no policy: built-in default


def test_explanation_names_combined_findings_deterministically_and_stays_short() -> None:
    findings = [
        _finding("miner.xmrig-binary", path="/usr/sbin/nginx"),
        _finding("backdoor.reverse-shell-bash", Severity.CRITICAL, Confidence.HIGH, Category.BACKDOOR, path="/s.sh"),
        _finding("miner.xmrig-binary", path="/usr/bin/b"),
        _finding("miner.stratum-url", Severity.HIGH, Confidence.HIGH, path="/etc/m.json"),
    ]
    verdict, explanation = rollup(findings)
    assert verdict is Verdict.MALICIOUS
    assert explanation == (
        "malicious: backdoor.reverse-shell-bash (critical, backdoor) at /s.sh combined with "
        "miner.xmrig-binary (critical, miner) at /usr/bin/b and 1 more and "
        "miner.stratum-url (high, miner) at /etc/m.json"
    )
    assert rollup(list(reversed(findings)))[1] == explanation

    many = [_finding(f"rule.number-{i:02d}", path=f"/very/long/path/to/some/file/{i:02d}" * 3) for i in range(30)]
    long_explanation = decide(many, "prod/app", Policy(block_categories=frozenset({Category.MINER}))).explanation
    assert len(long_explanation) <= EXPLANATION_LIMIT
    assert long_explanation.startswith("malicious: rule.number-00 (critical, miner)")
    assert "more rules" in long_explanation or "…" in long_explanation
    assert long_explanation.endswith("quarantined: policy by default blocks miner (rule.number-00, rule.number-01 …)")


def test_a_job_records_a_broken_policy_as_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import jobs
    from workers.domain import ScanStatus, sha256_digest
    from workers.store import Store

    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrepositories:\n  - match: ''\n")
    database_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    for key in list(os.environ):
        if key.startswith("TOLLGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TOLLGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(policy))
    store = Store(database_url)
    store.migrate()
    digest = sha256_digest(b"image")
    monkeypatch.setattr(jobs, "_store", lambda: store)
    # the rules are not under test here (and may be mid-edit in a shared tree): a stand-in with a version
    monkeypatch.setattr(jobs, "load_scanners", lambda *_a, **_k: SimpleNamespace(ruleset="rs-test"))

    outcome = jobs.scan_image("team/app", digest)
    assert outcome["status"] == "error"
    assert f"policy file {policy}:3: repositories[0].match" in outcome["error"]
    record = store.get_record("team/app", digest)
    assert record is not None
    assert record.status is ScanStatus.ERROR
    assert record.verdict is None
    assert "repositories[0].match" in record.errors[0]
    store.close()
