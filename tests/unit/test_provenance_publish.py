"""Tollgate's own referrers are recognised: no re-evaluation of its verdict pushes, no verification as signatures."""

from __future__ import annotations

import json

from workers.domain import Digest, parse_digest, sha256_digest
from workers.provenance.publish import (
    PROVENANCE_ARTIFACT_TYPE,
    VERDICT_ARTIFACT_TYPE,
    artifact_type_of,
    is_tollgate_artifact,
    is_tollgate_layer,
    subject_tags,
)
from workers.registry import FetchedManifest
from workers.signature_jobs import lookup_subject

SUBJECT = parse_digest("sha256:" + "ab" * 32)


def referrer(artifact_type: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:" + "44" * 32, "size": 2},
            "layers": [],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": SUBJECT, "size": 9},
        }
    ).encode()


class Registry:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        return FetchedManifest("application/vnd.oci.image.manifest.v1+json", sha256_digest(self.raw), self.raw)


def test_a_pushed_tollgate_referrer_does_not_re_evaluate_its_subject() -> None:
    for artifact_type in (VERDICT_ARTIFACT_TYPE, PROVENANCE_ARTIFACT_TYPE):
        raw = referrer(artifact_type)
        found = lookup_subject(Registry(raw), "team/app", sha256_digest(raw))
        assert found.subject is None
        assert found.reason == "the manifest is Tollgate's own attestation"


def test_other_referrers_still_re_evaluate_their_subject() -> None:
    raw = referrer("application/vnd.dev.sigstore.bundle.v0.3+json")
    assert lookup_subject(Registry(raw), "team/app", sha256_digest(raw)).subject == SUBJECT


def test_recognition_helpers() -> None:
    assert artifact_type_of(referrer(VERDICT_ARTIFACT_TYPE)) == VERDICT_ARTIFACT_TYPE
    assert artifact_type_of(b'{"config": {"mediaType": "x/y"}}') == "x/y"
    assert artifact_type_of(b"[" * 100_000) is None
    assert is_tollgate_artifact(VERDICT_ARTIFACT_TYPE)
    assert not is_tollgate_artifact("application/vnd.dev.sigstore.bundle.v0.3+json")
    assert is_tollgate_layer({"dev.tollgate.attestation": "verdict"})
    assert not is_tollgate_layer({"predicateType": "https://slsa.dev/verification_summary/v1"})
    assert subject_tags(SUBJECT) == ("sha256-" + "ab" * 32, "sha256-" + "ab" * 32 + ".att")
    assert subject_tags(Digest("sha256:" + "cd" * 32))[1].endswith(".att")


class AttRegistry:
    """The ``.att`` manifest of SUBJECT with cosign's layer and Tollgate's verdict layer; nothing else."""

    def __init__(self) -> None:
        self.blobs = {sha256_digest(b"cosign-envelope"): b"cosign-envelope", sha256_digest(b"tollgate"): b"tollgate"}
        layers = [
            {
                "mediaType": "application/vnd.dsse.envelope.v1+json",
                "digest": digest,
                "size": len(blob),
                "annotations": {
                    "predicateType": "https://slsa.dev/provenance/v1",
                    "dev.cosignproject.cosign/signature": "",
                }
                | ({"dev.tollgate.attestation": "verdict"} if blob == b"tollgate" else {}),
            }
            for digest, blob in self.blobs.items()
        ]
        self.att = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": layers}
        ).encode()

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        from workers.errors import NotFound

        if reference.endswith(".att"):
            return FetchedManifest("application/vnd.oci.image.manifest.v1+json", sha256_digest(self.att), self.att)
        raise NotFound(reference)

    def get_blob(self, repository: str, digest: Digest, *, max_bytes: int) -> bytes:
        return self.blobs[digest]

    def referrers(self, repository: str, digest: Digest, *, artifact_type: str | None = None) -> None:
        return None


def test_signature_discovery_skips_tollgates_own_verdict_layer() -> None:
    from typing import Any, cast

    from workers.signatures.discovery import discover

    found = discover(cast(Any, AttRegistry()), "team/app", SUBJECT)
    assert [layer.blob for layer in found.attestations] == [b"cosign-envelope"]
