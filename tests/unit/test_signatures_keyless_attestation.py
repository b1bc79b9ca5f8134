"""Legacy keyless ``.att`` layers verified offline against the private test Sigstore (dsse 0.0.1 and intoto 0.0.2)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.support.sigstore import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    DEFAULT_IDENTITY,
    DEFAULT_ISSUER,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    LegacyAttestation,
    PrivateSigstore,
    in_toto_statement,
    pae,
)
from workers.domain import Descriptor, Digest, sha256_digest
from workers.signatures.identity import IdentityPolicy
from workers.signatures.legacy_keyless import verify_keyless_attestation_layer
from workers.signatures.model import SignatureCheck, SignatureKind
from workers.signatures.trustroot import TrustRoot, load_trust_root

SLSA = "https://slsa.dev/provenance/v1"
IMAGE = Digest("sha256:" + "ab" * 32)
OTHER = Digest("sha256:" + "cd" * 32)


@pytest.fixture(scope="module")
def root(private_sigstore: PrivateSigstore) -> TrustRoot:
    return load_trust_root(private_sigstore.trusted_root_path)


def _check(
    att: LegacyAttestation, root: TrustRoot, *, subject: Digest = IMAGE, policy: IdentityPolicy | None = None
) -> SignatureCheck:
    layer = Descriptor(
        media_type=att.media_type,
        digest=sha256_digest(att.envelope),
        size=len(att.envelope),
        annotations=att.annotations,
    )
    return verify_keyless_attestation_layer(layer, att.envelope, subject, root, policy=policy, source="tag x.att")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _intoto_attestation(sigstore: PrivateSigstore, statement: bytes, *, body_payload: bytes | None = None) -> Any:
    """What cosign 2.x stores: the SET covers an ``intoto`` 0.0.2 body with a double-base64 signature."""
    leaf = sigstore.issue()
    signature = leaf.sign(pae(IN_TOTO_PAYLOAD_TYPE, statement))
    envelope = {
        "payload": _b64(statement),
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "signatures": [{"sig": _b64(signature)}],
    }
    body = {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": IN_TOTO_PAYLOAD_TYPE,
                    "signatures": [{"sig": _b64(_b64(signature).encode()), "publicKey": _b64(leaf.pem)}],
                },
                "hash": {"algorithm": "sha256", "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(body_payload or statement).hexdigest()},
            }
        },
    }
    entry = sigstore.log("intoto", body)
    base = sigstore.legacy_attestation(statement)  # for the certificate/chain annotation shape
    annotations = {
        **base.annotations,
        ANNOTATION_CERTIFICATE: leaf.pem.decode(),
        ANNOTATION_BUNDLE: json.dumps(entry.set_bundle, separators=(",", ":")),
    }
    return LegacyAttestation(envelope=json.dumps(envelope).encode(), annotations=annotations, entry=entry)


def test_a_keyless_attestation_with_a_dsse_entry_verifies(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {"builder": {"id": "ci"}}))
    check = _check(att, root)
    assert check.verified, check.reason
    assert check.kind is SignatureKind.ATTESTATION_KEYLESS
    assert (check.identity, check.issuer, check.predicate_type) == (DEFAULT_IDENTITY, DEFAULT_ISSUER, SLSA)
    assert att.entry is not None and check.log_index == att.entry.log_index
    assert check.statement is not None and check.statement["predicate"] == {"builder": {"id": "ci"}}


def test_a_keyless_attestation_with_an_intoto_entry_verifies(
    private_sigstore: PrivateSigstore, root: TrustRoot
) -> None:
    check = _check(_intoto_attestation(private_sigstore, in_toto_statement(IMAGE, SLSA, {})), root)
    assert check.verified, check.reason
    assert check.predicate_type == SLSA


def test_an_intoto_entry_for_another_payload_fails(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    statement = in_toto_statement(IMAGE, SLSA, {})
    att = _intoto_attestation(private_sigstore, statement, body_payload=statement + b" ")
    check = _check(att, root)
    assert not check.verified and "another payload" in check.reason


def test_a_statement_about_another_image_fails(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(OTHER, SLSA, {}))
    check = _check(att, root)
    assert not check.verified and f"not {IMAGE}" in check.reason


def test_a_tampered_envelope_payload_fails(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {"builder": {"id": "ci"}}))
    envelope = json.loads(att.envelope)
    envelope["payload"] = _b64(in_toto_statement(IMAGE, SLSA, {"builder": {"id": "attacker"}}))
    tampered = LegacyAttestation(envelope=json.dumps(envelope).encode(), annotations=att.annotations)
    check = _check(tampered, root)
    assert not check.verified and "certificate's key" in check.reason


def test_a_certificate_swapped_for_another_leaf_fails(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {}))
    other = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {}))
    swapped = LegacyAttestation(
        envelope=other.envelope,
        annotations={**other.annotations, ANNOTATION_BUNDLE: att.annotations[ANNOTATION_BUNDLE]},
    )
    check = _check(swapped, root)
    assert not check.verified and "different signature" in check.reason


def test_an_attestation_from_an_untrusted_sigstore_fails(untrusted_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    check = _check(untrusted_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {})), root)
    assert not check.verified and "SET" in check.reason


def test_an_expired_certificate_at_signing_time_fails(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    leaf = private_sigstore.issue(expired=True)
    check = _check(private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {}), leaf=leaf), root)
    assert not check.verified and "not valid at the integrated time" in check.reason


def test_the_identity_policy_applies(private_sigstore: PrivateSigstore, root: TrustRoot) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {}))
    good = IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY)
    wrong = IdentityPolicy(issuer=DEFAULT_ISSUER, subject="someone-else@example.com")
    assert _check(att, root, policy=good).verified
    refused = _check(att, root, policy=wrong)
    assert not refused.verified and refused.identity == DEFAULT_IDENTITY


@pytest.mark.parametrize(
    ("envelope", "why"),
    [
        (b"not json", "DSSE envelope"),
        (b"[]", "not a JSON object"),
        (
            json.dumps({"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": "e30=", "signatures": []}).encode(),
            "no signatures",
        ),
        (
            json.dumps({"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": "e30=", "signatures": [{"sig": 7}]}).encode(),
            "signatures[0].sig",
        ),
    ],
)
def test_hostile_envelopes_are_reasons_not_crashes(
    private_sigstore: PrivateSigstore, root: TrustRoot, envelope: bytes, why: str
) -> None:
    att = private_sigstore.legacy_attestation(in_toto_statement(IMAGE, SLSA, {}))
    check = _check(LegacyAttestation(envelope=envelope, annotations=att.annotations, media_type=DSSE_MEDIA_TYPE), root)
    assert not check.verified and why in check.reason
