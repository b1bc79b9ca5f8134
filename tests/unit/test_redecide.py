"""Re-decision pieces: stored signature checks read back, and a decision never overwriting a newer scan."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.storage import digest_of, make_finding, make_report
from workers.domain import Action, Digest, ScanStatus, Verdict
from workers.redecide import stored_checks
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.store import Store

REPO = "team/app"


def test_stored_checks_read_back_what_the_record_holds() -> None:
    check = SignatureCheck(
        kind=SignatureKind.COSIGN_KEYLESS,
        format=SignatureFormat.BUNDLE_REFERRER,
        subject=digest_of("image"),
        verified=True,
        reason="signed by https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        source=digest_of("bundle"),
        identity="https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        issuer="https://token.actions.githubusercontent.com",
        log_index=42,
        integrated_time=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )
    assert stored_checks([check.to_json()]) == (check,)


def test_malformed_stored_checks_are_not_counted() -> None:
    good = SignatureCheck(
        SignatureKind.COSIGN_KEYED, SignatureFormat.LEGACY_TAG, digest_of("i"), True, "by key", "sha256-x.sig"
    ).to_json()
    hostile = [
        {**good, "kind": "made-up"},
        {**good, "verified": "yes"},  # only a real true counts as verified
        {**good, "time": "not a time"},
        {"kind": "cosign-keyed"},
        {},
    ]
    checks = stored_checks([*hostile, good])
    assert [c.verified for c in checks] == [False, True]


def _waive_all(store: Store, digest: Digest, scanned_at: datetime) -> bool:
    return store.update_decision(
        REPO,
        digest,
        verdict=Verdict.CLEAN,
        action=Action.ALLOW,
        explanation="clean: every finding is waived",
        findings=[make_finding(0, waived=True, waiver_id=1)],
        scanned_at=scanned_at,
    )


def test_a_decision_never_overwrites_a_newer_scan(store: Store) -> None:
    digest = digest_of("a")
    store.save_report(make_report(REPO, digest))
    first = store.get_record(REPO, digest)
    assert first is not None and first.scanned_at is not None
    assert not _waive_all(store, digest, datetime(2000, 1, 1, tzinfo=UTC))
    assert store.get_record(REPO, digest) == first
    assert _waive_all(store, digest, first.scanned_at)
    after = store.get_record(REPO, digest)
    assert after is not None and (after.verdict, after.action) == (Verdict.CLEAN, Action.ALLOW)
    assert [(f.waived, f.waiver_id) for f in after.findings] == [(True, 1)]
    assert after.signatures == first.signatures and after.scanned_at == first.scanned_at
    store.mark_queued(REPO, digest, ruleset="rules-2", job_id="scan-x", rescan=True)
    queued = store.get_record(REPO, digest)
    assert queued is not None and queued.status is ScanStatus.QUEUED
    assert not _waive_all(store, digest, first.scanned_at)
