"""Signature discovery and bundle verification against the real registry (distribution 2.8, no referrers API)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.oci import tar_layer, write_image_layout
from tests.support.registry import RunningRegistry
from tests.support.sigstore import (
    BUNDLE_MEDIA_TYPE,
    COSIGN_SIGN_PREDICATE,
    DEFAULT_IDENTITY,
    DEFAULT_ISSUER,
    PrivateSigstore,
    in_toto_statement,
    simple_signing_payload,
)
from workers.domain import Digest, MediaType, parse_digest, sha256_digest
from workers.policy import TrustPolicy
from workers.registry import RegistryClient
from workers.signatures.bundles import BundleVerifier
from workers.signatures.discovery import discover, signature_subject
from workers.signatures.identity import IdentityPolicy
from workers.signatures.model import SignatureFormat, SignatureKind
from workers.signatures.verify import verify_discovered

pytestmark = pytest.mark.functional

REPO = "team/app"
SLSA = "https://slsa.dev/provenance/v1"
POLICY = IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY)
APP = tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho signed\n"})


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, retries=1, backoff=0.01) as made:
        yield made


@pytest.fixture
def image(registry: RunningRegistry, tmp_path: Path) -> Digest:
    digest = write_image_layout(tmp_path / "app", [APP])
    registry.push_layout(tmp_path / "app", REPO, "1.0")
    return parse_digest(digest)


def _descriptor(media_type: str, data: bytes, digest: Digest, annotations: Mapping[str, str] | None = None) -> Any:
    described: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
    if annotations:
        described["annotations"] = dict(annotations)
    return described


def _put(client: RegistryClient, reference: str, document: Mapping[str, Any], media_type: str) -> tuple[Digest, int]:
    raw = json.dumps(document).encode()
    return client.put_manifest(REPO, reference, raw, media_type), len(raw)


def push_legacy(client: RegistryClient, tag: str, layers: list[tuple[str, bytes, Mapping[str, str]]]) -> Digest:
    """A cosign-style ``.sig``/``.att`` manifest: an OCI config and one layer per signature."""
    config = b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": _descriptor(MediaType.OCI_CONFIG, config, client.upload_blob(REPO, config)),
        "layers": [_descriptor(kind, blob, client.upload_blob(REPO, blob), notes) for kind, blob, notes in layers],
    }
    return _put(client, tag, manifest, MediaType.OCI_MANIFEST)[0]


def push_bundle_referrer(client: RegistryClient, subject: Digest, bundle: bytes, predicate_type: str) -> dict[str, Any]:
    """What cosign v3 pushes by digest: a referrer manifest with the bundle as its one layer; its index entry."""
    empty = b"{}"
    subject_raw = client.get_manifest(REPO, subject).raw
    annotations = {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate_type}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": _descriptor(MediaType.OCI_EMPTY, empty, client.upload_blob(REPO, empty)),
        "layers": [_descriptor(BUNDLE_MEDIA_TYPE, bundle, client.upload_blob(REPO, bundle))],
        "subject": _descriptor(MediaType.OCI_MANIFEST, subject_raw, subject),
        "annotations": annotations,
    }
    raw = json.dumps(manifest).encode()
    digest = client.put_manifest(REPO, sha256_digest(raw), raw, MediaType.OCI_MANIFEST)
    return {
        "mediaType": MediaType.OCI_MANIFEST,
        "digest": digest,
        "size": len(raw),
        "artifactType": BUNDLE_MEDIA_TYPE,
        "annotations": annotations,
    }


def push_fallback_index(client: RegistryClient, subject: Digest, entries: list[dict[str, Any]]) -> Digest:
    """The ``sha256-<hex>`` tag that ggcr clients maintain when the registry has no referrers API."""
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}
    return _put(client, "sha256-" + subject.removeprefix("sha256:"), index, MediaType.OCI_INDEX)[0]


def test_signatures_pushed_after_the_image_are_found_and_verified(
    client: RegistryClient, image: Digest, private_sigstore: PrivateSigstore
) -> None:
    before = discover(client, REPO, image)  # the image's own push event: nothing signed it yet
    assert before.empty and before.notes == () and before.referrers_api is False

    tag = "sha256-" + image.removeprefix("sha256:")
    legacy = private_sigstore.legacy_signature(simple_signing_payload(image, f"127.0.0.1/{REPO}"))
    sig_digest = push_legacy(client, f"{tag}.sig", [(legacy.media_type, legacy.payload, legacy.annotations)])
    attestation = private_sigstore.legacy_attestation(in_toto_statement(image, SLSA, {"builder": {"id": "ci"}}))
    push_legacy(client, f"{tag}.att", [(attestation.media_type, attestation.envelope, attestation.annotations)])
    signed = push_bundle_referrer(client, image, private_sigstore.sign_image_bundle(image), COSIGN_SIGN_PREDICATE)
    attested = push_bundle_referrer(client, image, private_sigstore.attest_bundle(image, SLSA, {}), SLSA)
    push_fallback_index(client, image, [signed, attested])

    found = discover(client, REPO, image)
    assert found.notes == () and not found.referrers_api  # 2.8 has no referrers API: the fallback tag served
    (signature,) = found.signatures
    assert signature.tag == f"{tag}.sig" and signature.manifest_digest == sig_digest and signature.index == 0
    assert signature.blob == legacy.payload and dict(signature.annotations) == legacy.annotations
    (att,) = found.attestations
    assert att.blob == attestation.envelope and att.annotations["predicateType"] == SLSA
    assert [b.manifest_digest for b in found.bundles] == [signed["digest"], attested["digest"]]
    assert {b.found_via for b in found.bundles} == {f"tag {tag}"}
    assert [b.predicate_type for b in found.bundles] == [COSIGN_SIGN_PREDICATE, SLSA]

    verifier = BundleVerifier.from_trusted_root(private_sigstore.trusted_root_path)
    checks = [verifier.verify(b.bundle, image, POLICY, source=b.source) for b in found.bundles]
    assert all(check.verified for check in checks), [check.reason for check in checks]
    assert [check.kind for check in checks] == [SignatureKind.COSIGN_KEYLESS, SignatureKind.ATTESTATION_KEYLESS]
    assert checks[0].source == signed["digest"] and checks[0].identity == DEFAULT_IDENTITY
    # The legacy layers pulled from the registry verify offline too, the keyless .att included.
    trust = TrustPolicy(identities=(POLICY,), trusted_root=private_sigstore.trusted_root_path)
    legacy_checks = verify_discovered(found, trust).checks
    by_kind = {check.kind: check for check in legacy_checks if check.format is SignatureFormat.LEGACY_TAG}
    assert set(by_kind) == {SignatureKind.COSIGN_KEYLESS, SignatureKind.ATTESTATION_KEYLESS}
    assert all(check.verified for check in by_kind.values()), [c.reason for c in by_kind.values()]
    assert by_kind[SignatureKind.ATTESTATION_KEYLESS].predicate_type == SLSA

    # What the webhook asks for each of those pushes: the image whose signatures must be re-evaluated.
    for pushed_tag in (f"{tag}.sig", f"{tag}.att", tag):
        assert signature_subject(tag=pushed_tag) == image
    referrer_raw = client.get_manifest(REPO, signed["digest"]).raw
    assert signature_subject(manifest=referrer_raw) == image
    assert signature_subject(tag="1.0", manifest=client.get_manifest(REPO, "1.0").raw) is None


def test_rejected_and_ignored_referrers(
    client: RegistryClient,
    image: Digest,
    registry: RunningRegistry,
    tmp_path: Path,
    private_sigstore: PrivateSigstore,
    untrusted_sigstore: PrivateSigstore,
) -> None:
    other_digest = parse_digest(write_image_layout(tmp_path / "other", [tar_layer({"other": b"x"})]))
    registry.push_layout(tmp_path / "other", REPO, "other")
    evil = private_sigstore.issue("evil@example.com")
    wrong_signer = push_bundle_referrer(
        client, image, private_sigstore.sign_image_bundle(image, leaf=evil), COSIGN_SIGN_PREDICATE
    )
    untrusted = push_bundle_referrer(client, image, untrusted_sigstore.sign_image_bundle(image), COSIGN_SIGN_PREDICATE)
    elsewhere = push_bundle_referrer(
        client, other_digest, private_sigstore.sign_image_bundle(other_digest), COSIGN_SIGN_PREDICATE
    )
    # A bundle signed for the other image but attached to this one: found, and its statement rejects it.
    misattached = push_bundle_referrer(
        client, image, private_sigstore.sign_image_bundle(other_digest), COSIGN_SIGN_PREDICATE
    )
    push_fallback_index(client, image, [wrong_signer, untrusted, elsewhere, misattached])
    tag = "sha256-" + image.removeprefix("sha256:")
    payload = simple_signing_payload(image)
    push_legacy(client, f"{tag}.sig", [("text/plain", payload, {})])

    found = discover(client, REPO, image)
    assert [b.manifest_digest for b in found.bundles] == [
        wrong_signer["digest"],
        untrusted["digest"],
        misattached["digest"],
    ]
    reasons = {note.where: note.reason for note in found.notes}
    assert reasons[f"referrer {elsewhere['digest']}"] == f"ignored: its subject is {other_digest}, not {image}"
    assert reasons[f"{tag}.sig layer 0"] == (
        "media type text/plain, expected application/vnd.dev.cosign.simplesigning.v1+json"
    )
    assert found.signatures == ()

    verifier = BundleVerifier.from_trusted_root(private_sigstore.trusted_root_path)
    checks = [verifier.verify(b.bundle, image, POLICY, source=b.source) for b in found.bundles]
    assert [check.verified for check in checks] == [False, False, False]
    assert checks[0].reason.startswith("signer not allowed: identity evil@example.com does not match")
    assert checks[1].reason.startswith("certificate does not chain to the trusted root")
    assert checks[2].reason == f"statement is for {other_digest}, not {image}"
