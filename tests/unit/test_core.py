"""Unit tests for the pure core: references, manifest/config parsing, history alignment, settings, policy."""

from __future__ import annotations

import json

import pytest

from workers.domain import (
    Action,
    Category,
    Confidence,
    Finding,
    Severity,
    Verdict,
    parse_digest,
    parse_reference,
    sha256_digest,
)
from workers.errors import ConfigError, IntegrityError, UnsupportedMediaType
from workers.oci import HistoryEntry, ImageIndex, ImageManifest, align_history, parse_config, parse_manifest
from workers.policy import decide, rollup
from workers.settings import Settings

D1 = sha256_digest(b"one")
D2 = sha256_digest(b"two")


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("team/app:1.4", None, "team/app", "1.4", None),
        ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1", None),
        (f"localhost/app@{D1}", "localhost", "app", None, D1),
        (f"reg.example/a/b/c:t@{D1}", "reg.example", "a/b/c", "t", D1),
        ("app", None, "app", None, None),
    ],
)
def test_parse_reference(text: str, registry: str | None, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    "text", ["", "UPPER/case", "a//b", "app:bad tag", "app@sha256:short", "../x", "a:" + "t" * 200]
)
def test_parse_reference_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="not"):
        parse_reference(text)


def test_parse_digest() -> None:
    assert parse_digest(D1) == D1
    for bad in ["sha256:" + "A" * 64, "md5:abc", "sha256:" + "0" * 63, 5]:
        with pytest.raises(ValueError, match="digest"):
            parse_digest(bad)  # type: ignore[arg-type]


def _manifest(**extra: object) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 20}],
    }
    body.update(extra)
    return json.dumps(body).encode()


def test_parse_manifest_image_and_artifact() -> None:
    parsed = parse_manifest(None, _manifest())
    assert isinstance(parsed, ImageManifest)
    assert parsed.is_image
    assert parsed.layers[0].digest == D2
    artifact = parse_manifest(None, _manifest(artifactType="application/vnd.dev.sigstore.bundle.v0.3+json"))
    assert isinstance(artifact, ImageManifest)
    assert not artifact.is_image


def test_index_runnable_skips_attestations_and_unknown_platforms() -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": D1,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": D2,
                "size": 1,
                "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": D1},
            },
        ],
    }
    parsed = parse_manifest(None, json.dumps(index).encode())
    assert isinstance(parsed, ImageIndex)
    assert [c.digest for c in parsed.runnable()] == [D1]
    assert [c.digest for c in parsed.attestations()] == [D2]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"not json", IntegrityError),
        (b"[]", IntegrityError),
        (json.dumps({"schemaVersion": 1}).encode(), UnsupportedMediaType),
        (_manifest(layers="nope"), IntegrityError),
        (_manifest(config={"mediaType": "x", "digest": "sha256:zz", "size": 1}), IntegrityError),
        (_manifest(config={"mediaType": "x", "digest": D1, "size": -1}), IntegrityError),
        (_manifest(mediaType="application/x-unknown"), UnsupportedMediaType),
        (b" " * (4 * 1024 * 1024 + 1), IntegrityError),
    ],
)
def test_parse_manifest_hostile(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_manifest(None, raw)


def test_parse_config_tolerates_nulls_and_aligns_history() -> None:
    config = parse_config(
        json.dumps(
            {
                "architecture": "arm64",
                "os": "linux",
                "config": {"Entrypoint": None, "Cmd": ["sh"], "Env": None, "Labels": None},
                "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
                "history": [
                    {"created_by": "ADD rootfs.tar /"},
                    {"created_by": "ENV A=1", "empty_layer": True},
                    {"created_by": "RUN make"},
                ],
                "unknown": {"ignored": True},
            }
        ).encode()
    )
    assert str(config.platform) == "linux/arm64"
    assert config.entrypoint == ()
    assert config.cmd == ("sh",)
    steps, aligned = align_history(config.history, 2)
    assert aligned
    assert steps == ("ADD rootfs.tar /", "RUN make")


def test_align_history_refuses_to_guess() -> None:
    history = (HistoryEntry("RUN a", False), HistoryEntry("RUN b", False))
    assert align_history(history, 3) == ((None, None, None), False)
    assert align_history((), 1) == ((None,), False)


def test_parse_config_hostile_types() -> None:
    with pytest.raises(IntegrityError):
        parse_config(json.dumps({"config": {"Env": [1, 2]}}).encode())
    with pytest.raises(IntegrityError):
        parse_config(json.dumps({"rootfs": {"diff_ids": ["nope"]}}).encode())


def _finding(severity: Severity, confidence: Confidence, *, waived: bool = False) -> Finding:
    return Finding(
        rule="t.rule", severity=severity, category=Category.MINER, message="m", confidence=confidence, waived=waived
    )


@pytest.mark.parametrize(
    ("findings", "verdict"),
    [
        ([], Verdict.CLEAN),
        ([_finding(Severity.LOW, Confidence.HIGH)], Verdict.CLEAN),
        ([_finding(Severity.MEDIUM, Confidence.MEDIUM)], Verdict.SUSPICIOUS),
        ([_finding(Severity.HIGH, Confidence.LOW)], Verdict.SUSPICIOUS),
        ([_finding(Severity.HIGH, Confidence.HIGH)], Verdict.MALICIOUS),
        ([_finding(Severity.CRITICAL, Confidence.MEDIUM)], Verdict.MALICIOUS),
        ([_finding(Severity.CRITICAL, Confidence.HIGH, waived=True)], Verdict.CLEAN),
    ],
)
def test_rollup(findings: list[Finding], verdict: Verdict) -> None:
    assert rollup(findings)[0] is verdict


def test_decide_explains_and_maps_action() -> None:
    decision = decide([_finding(Severity.CRITICAL, Confidence.HIGH)], "team/app")
    assert decision.verdict is Verdict.MALICIOUS
    assert decision.action is Action.QUARANTINE
    assert "t.rule" in decision.explanation


def test_settings_from_env_strict() -> None:
    settings = Settings.from_env({"TOLLGATE_JOB_TIMEOUT": "60", "TOLLGATE_LIMIT_MAX_ENTRIES": "10"})
    assert settings.job_timeout == 60
    assert settings.limits.max_entries == 10
    for env in (
        {"TOLLGATE_NOPE": "1"},
        {"TOLLGATE_JOB_TIMEOUT": "soon"},
        {"TOLLGATE_REGISTRY_URL": "ftp://x"},
        {"TOLLGATE_QUARANTINE_REPO": "quarantine"},
        {"TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "maybe"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
