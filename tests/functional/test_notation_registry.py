"""Notation signatures pushed to the real registry as referrers (fallback index), found and verified by policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_signature_discovery import push_fallback_index
from tests.support.notation import JWS_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE, NotationSigner
from tests.support.oci import tar_layer, write_image_layout
from tests.support.registry import RunningRegistry
from workers.domain import Digest, MediaType, parse_digest, sha256_digest
from workers.policy import parse_policy
from workers.registry import RegistryClient
from workers.signatures.model import SignatureKind
from workers.signatures.verify import verify_image

REPO = "team/app"
TRUSTED = "C=US, O=Acme Rockets, CN=release-signer"


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, retries=1, backoff=0.01) as made:
        yield made


@pytest.fixture
def image(registry: RunningRegistry, tmp_path: Path) -> Digest:
    digest = write_image_layout(tmp_path / "app", [tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho hi\n"})])
    registry.push_layout(tmp_path / "app", REPO, "1.0")
    return parse_digest(digest)


def push_notation(client: RegistryClient, subject: Digest, envelope: bytes) -> dict[str, Any]:
    """What ``notation sign`` pushes on a registry without a referrers API: a referrer manifest by digest."""
    empty = b"{}"
    subject_raw = client.get_manifest(REPO, subject).raw
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": NOTATION_ARTIFACT_TYPE,
        "config": {"mediaType": MediaType.OCI_EMPTY, "digest": client.upload_blob(REPO, empty), "size": 2},
        "layers": [{"mediaType": JWS_MEDIA_TYPE, "digest": client.upload_blob(REPO, envelope), "size": len(envelope)}],
        "subject": {"mediaType": MediaType.OCI_MANIFEST, "digest": subject, "size": len(subject_raw)},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    }
    raw = json.dumps(manifest).encode()
    digest = client.put_manifest(REPO, sha256_digest(raw), raw, MediaType.OCI_MANIFEST)
    return {
        "mediaType": MediaType.OCI_MANIFEST,
        "digest": digest,
        "size": len(raw),
        "artifactType": NOTATION_ARTIFACT_TYPE,
    }


def test_a_notation_signature_in_the_registry_satisfies_a_required_policy(
    client: RegistryClient, image: Digest, tmp_path: Path
) -> None:
    signer = NotationSigner(tmp_path / "ca")
    subject_raw = client.get_manifest(REPO, image).raw
    target = {"mediaType": MediaType.OCI_MANIFEST, "digest": image, "size": len(subject_raw)}
    good = push_notation(client, image, signer.envelope(target))
    stranger = signer.leaf({"C": "US", "O": "Elsewhere", "CN": "someone"})
    untrusted = push_notation(client, image, signer.envelope(target, leaf=stranger))
    push_fallback_index(client, image, [good, untrusted])

    policy = parse_policy(
        f"""
version: 1
default:
  signatures:
    required: true
    notation: {{trust_store: {signer.trust_store}, identities: ["{TRUSTED}"]}}
""",
        "policy.yaml",
    )
    report = verify_image(client, REPO, image, policy.for_repository(REPO).signatures)
    notation = [c for c in report.checks if c.kind is SignatureKind.NOTATION]
    assert [c.source for c in notation] == [good["digest"], untrusted["digest"]]
    assert notation[0].verified and "CN=release-signer" in (notation[0].identity or "")
    assert not notation[1].verified and "not a trusted identity" in notation[1].reason
    assert report.notes == ()


def test_without_a_notation_trust_store_the_signature_is_recorded_not_verified(
    client: RegistryClient, image: Digest, tmp_path: Path
) -> None:
    signer = NotationSigner(tmp_path / "ca")
    subject_raw = client.get_manifest(REPO, image).raw
    target = {"mediaType": MediaType.OCI_MANIFEST, "digest": image, "size": len(subject_raw)}
    push_fallback_index(client, image, [push_notation(client, image, signer.envelope(target))])
    trust = parse_policy("version: 1\n", "policy.yaml").for_repository(REPO).signatures
    (check,) = verify_image(client, REPO, image, trust).checks
    assert check.kind is SignatureKind.NOTATION and not check.verified
    assert "no notation trust store" in check.reason


def test_tollgate_verify_checks_notation_signatures(
    registry: RunningRegistry, client: RegistryClient, image: Digest, tmp_path: Path
) -> None:
    from tests.functional.test_signature_verify import _verify as run_verify

    signer = NotationSigner(tmp_path / "ca")
    subject_raw = client.get_manifest(REPO, image).raw
    target = {"mediaType": MediaType.OCI_MANIFEST, "digest": image, "size": len(subject_raw)}
    push_fallback_index(client, image, [push_notation(client, image, signer.envelope(target))])

    code, out = run_verify(
        registry, f"{REPO}:1.0", "--notation-trust-store", signer.trust_store, "--notation-identity", TRUSTED
    )
    assert code == 0 and out["verified"] is True, out
    assert out["checks"][0]["kind"] == "notation" and out["checks"][0]["format"] == "notation-referrer"
    code, out = run_verify(
        registry, f"{REPO}:1.0", "--notation-trust-store", signer.trust_store, "--notation-identity", "CN=someone-else"
    )
    assert code == 1 and "not a trusted identity" in out["checks"][0]["reason"]
    other = NotationSigner(tmp_path / "other", name="Other Root")
    code, out = run_verify(registry, f"{REPO}:1.0", "--notation-trust-store", other.trust_store)
    assert code == 1 and "trust store" in out["checks"][0]["reason"]
    code, out = run_verify(registry, f"{REPO}:1.0", "--notation-identity", TRUSTED)
    assert code == 2 and "--notation-trust-store" in out["error"]
