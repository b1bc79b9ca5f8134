"""Offline verification of legacy keyless cosign ``.sig`` and ``.att`` layers: Fulcio certificate, chain, Rekor SET.

sigstore-python cannot load these (a SET and no inclusion proof), so the steps are done here, in order:
  1. the signature annotation decodes, the certificate annotation is one PEM certificate (the chain
     annotation, when present, only offers intermediates: trust comes from the trusted root alone);
  2. the signature verifies over the exact payload bytes with the certificate's key;
  3. the Rekor SET bundle verifies with the trusted root's log whose id it names, its key valid then;
     this fixes the signing time (the integrated time);
  4. the logged hashedrekord entry is sha256(payload), this signature and this certificate;
  5. the certificate chains to a Fulcio CA of the trusted root valid at the integrated time: every
     signature and every validity window checked at that time (the leaf lives ten minutes, so "now"
     would reject every real signature), CA constraints on issuers, digitalSignature and codeSigning on
     the leaf;
  6. the payload is a cosign container image signature of the subject digest;
  7. the identity the certificate names satisfies the identity policy.
A keyless ``.att`` layer (a DSSE envelope) goes through the same steps; its signature covers PAE, its log
entry is a ``dsse`` 0.0.1 or ``intoto`` 0.0.2 body (payload hash, signature, certificate), and the
in-toto Statement must name the subject.
Not checked: the certificate's embedded SCT (the CT log promise); the SET is the log evidence relied on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from workers.domain import Descriptor, Digest
from workers.errors import SignatureError
from workers.signatures.identity import CertificateIdentity, IdentityPolicy, certificate_identity
from workers.signatures.keyed import (
    BUNDLE_ANNOTATION,
    DSSE_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    layer_problem,
    parse_dsse,
)
from workers.signatures.keys import decode_base64, from_key_object
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.signatures.rekor import RekorEntry, verify_logged_envelope, verify_logged_signature
from workers.signatures.simplesigning import SIMPLE_SIGNING_MEDIA_TYPE, bind_payload
from workers.signatures.trustroot import CertificateAuthority, TrustRoot
from workers.signatures.x509path import MAX_CHAIN_CERTIFICATES, build_path, leaf_problem

__all__ = [
    "CERTIFICATE_ANNOTATION",
    "CHAIN_ANNOTATION",
    "verify_chain",
    "verify_keyless_attestation_layer",
    "verify_keyless_layer",
    "verify_keyless_signature",
]

CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
MAX_PEM_BYTES = 64 * 1024


def _load_pem_certificates(text: object, what: str) -> list[x509.Certificate]:
    if not isinstance(text, str) or not text.strip():
        raise SignatureError(f"{what} is missing or empty")
    data = text.encode("utf-8")
    if len(data) > MAX_PEM_BYTES:
        raise SignatureError(f"{what} is {len(data)} bytes, more than {MAX_PEM_BYTES}")
    try:
        certs = x509.load_pem_x509_certificates(data)
        for cert in certs:
            # cryptography parses extensions and keys lazily; a malformed one must fail here, as a reason.
            _ = cert.extensions
            cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"{what} is not PEM certificates: {str(exc)[:200]}") from None
    return certs


def verify_chain(
    leaf: x509.Certificate,
    untrusted: Sequence[x509.Certificate],
    trust_root: TrustRoot,
    when: datetime,
) -> CertificateAuthority:
    """Check ``leaf`` at ``when`` and find a path to a Fulcio CA of ``trust_root`` valid then; return that CA."""
    problem = leaf_problem(leaf, when)
    if problem is not None:
        raise SignatureError(problem)
    authorities = trust_root.authorities_at(when)
    if not authorities:
        raise SignatureError(f"no Fulcio CA of the trusted root ({trust_root.source}) was valid at {when.isoformat()}")
    problems: list[str] = []
    for authority in authorities:
        # The trusted root's chain is trusted; the annotation's certificates may only fill in intermediates.
        candidates = [*authority.certificates, *untrusted[:MAX_CHAIN_CERTIFICATES]]
        anchors = [c for c in authority.certificates if c.subject == c.issuer]
        if build_path(leaf, candidates=candidates, anchors=anchors, when=when, path=[leaf], problems=problems):
            return authority
    if problems:
        raise SignatureError(problems[0])
    raise SignatureError(f"certificate does not chain to a Fulcio CA of the trusted root ({trust_root.source})")


def _result(
    subject: Digest,
    source: str,
    *,
    verified: bool,
    reason: str,
    kind: SignatureKind = SignatureKind.COSIGN_KEYLESS,
    **extra: Any,
) -> SignatureCheck:
    return SignatureCheck(
        kind=kind,
        format=SignatureFormat.LEGACY_TAG,
        subject=subject,
        verified=verified,
        reason=reason,
        source=source,
        **extra,
    )


def _identity_fields(found: CertificateIdentity) -> dict[str, Any]:
    return {
        "identity": found.subject,
        "issuer": found.issuer,
        "workflow_repository": found.workflow_repository,
        "workflow_ref": found.workflow_ref,
    }


def _keyless_material(annotations: Mapping[str, str]) -> tuple[x509.Certificate, list[x509.Certificate], str]:
    """The leaf certificate, the offered intermediates and the SET bundle from a keyless layer's annotations."""
    leaves = _load_pem_certificates(annotations.get(CERTIFICATE_ANNOTATION), f"annotation {CERTIFICATE_ANNOTATION}")
    if len(leaves) != 1:
        raise SignatureError(f"annotation {CERTIFICATE_ANNOTATION} holds {len(leaves)} certificates, not one")
    chain_text = annotations.get(CHAIN_ANNOTATION)
    chain = _load_pem_certificates(chain_text, f"annotation {CHAIN_ANNOTATION}") if chain_text else []
    bundle = annotations.get(BUNDLE_ANNOTATION)
    if not bundle:
        raise SignatureError(f"no Rekor bundle ({BUNDLE_ANNOTATION}): a keyless signature needs one offline")
    return leaves[0], chain, bundle


def _same_certificate(logged_pem: bytes, leaf: x509.Certificate) -> None:
    try:
        logged = x509.load_pem_x509_certificate(logged_pem)
    except ValueError:
        raise SignatureError("Rekor entry public key is not a PEM certificate") from None
    if logged != leaf:
        raise SignatureError("Rekor entry records a different certificate")


def _verify_keyless(
    payload: bytes, annotations: Mapping[str, str], subject: Digest, trust_root: TrustRoot
) -> tuple[CertificateIdentity, RekorEntry]:
    # (1) inputs
    signature = decode_base64(annotations.get(SIGNATURE_ANNOTATION), f"signature annotation {SIGNATURE_ANNOTATION}")
    leaf, chain, bundle = _keyless_material(annotations)
    # (2) the signature, with the certificate's key
    leaf_key = from_key_object(leaf.public_key(), "certificate key", error=SignatureError)
    if not leaf_key.verify(signature, payload):
        raise SignatureError("signature does not verify with the certificate's key")
    # (3) the log's promise, which fixes the signing time; (4) the logged entry is this signature ...
    entry, record = verify_logged_signature(bundle, trust_root, payload, signature)
    # ... by this certificate
    _same_certificate(record.public_key, leaf)
    # (5) the certificate, at the signing time
    verify_chain(leaf, chain, trust_root, entry.integrated_at)
    # (6) what was signed
    bind_payload(payload, subject)
    return certificate_identity(leaf), entry


def verify_keyless_signature(
    payload: bytes,
    annotations: Mapping[str, str],
    subject: Digest,
    trust_root: TrustRoot,
    *,
    policy: IdentityPolicy | None,
    source: str,
) -> SignatureCheck:
    """Verify a legacy keyless signature of ``subject`` fully offline (steps in the module docstring).

    ``policy`` None records who signed without constraining it; callers pass it explicitly.
    """
    try:
        found, entry = _verify_keyless(payload, annotations, subject, trust_root)
    except SignatureError as exc:
        return _result(subject, source, verified=False, reason=str(exc))
    fields = {**_identity_fields(found), "log_index": entry.log_index, "integrated_time": entry.integrated_at}
    # (7) who signed
    mismatch = policy.mismatch(found) if policy is not None else None
    if mismatch is not None:
        return _result(subject, source, verified=False, reason=mismatch, **fields)
    reason = f"signed by {found.subject} (issuer {found.issuer}), logged at index {entry.log_index}"
    return _result(subject, source, verified=True, reason=reason, **fields)


def verify_keyless_layer(
    layer: Descriptor,
    blob: bytes,
    subject: Digest,
    trust_root: TrustRoot,
    *,
    policy: IdentityPolicy | None,
    source: str,
) -> SignatureCheck:
    """Verify one keyless layer of a ``sha256-<hex>.sig`` manifest (blob = payload, annotations = the rest)."""
    problem = layer_problem(layer, blob, SIMPLE_SIGNING_MEDIA_TYPE)
    if problem is not None:
        return _result(subject, source, verified=False, reason=problem)
    return verify_keyless_signature(blob, layer.annotations, subject, trust_root, policy=policy, source=source)


def _verify_keyless_envelope(
    envelope: bytes, annotations: Mapping[str, str], subject: Digest, trust_root: TrustRoot
) -> tuple[CertificateIdentity, RekorEntry, dict[str, Any]]:
    """Steps 1-7 of the module docstring for a DSSE envelope: the signature covers PAE, the log entry is a
    ``dsse`` 0.0.1 or ``intoto`` 0.0.2 body of that signature and payload, and the Statement names ``subject``."""
    leaf, chain, bundle = _keyless_material(annotations)
    parsed = parse_dsse(envelope)
    leaf_key = from_key_object(leaf.public_key(), "certificate key", error=SignatureError)
    message = parsed.message
    signature = parsed.signed(lambda candidate: leaf_key.verify(candidate, message), by="the certificate's key")
    entry, logged_pem = verify_logged_envelope(bundle, trust_root, parsed.payload, signature)
    _same_certificate(logged_pem, leaf)
    verify_chain(leaf, chain, trust_root, entry.integrated_at)
    statement = parsed.statement_about(subject)
    return certificate_identity(leaf), entry, statement


def verify_keyless_attestation_layer(
    layer: Descriptor,
    blob: bytes,
    subject: Digest,
    trust_root: TrustRoot,
    *,
    policy: IdentityPolicy | None,
    source: str,
) -> SignatureCheck:
    """Verify one keyless layer of a ``sha256-<hex>.att`` manifest (a DSSE envelope) fully offline."""
    kind = SignatureKind.ATTESTATION_KEYLESS
    problem = layer_problem(layer, blob, DSSE_MEDIA_TYPE)
    if problem is not None:
        return _result(subject, source, verified=False, reason=problem, kind=kind)
    try:
        found, entry, statement = _verify_keyless_envelope(blob, layer.annotations, subject, trust_root)
    except SignatureError as exc:
        return _result(subject, source, verified=False, reason=str(exc), kind=kind)
    predicate_type = statement["predicateType"]
    fields = {
        **_identity_fields(found),
        "log_index": entry.log_index,
        "integrated_time": entry.integrated_at,
        "predicate_type": predicate_type,
        "statement": statement,
    }
    mismatch = policy.mismatch(found) if policy is not None else None
    if mismatch is not None:
        return _result(subject, source, verified=False, reason=mismatch, kind=kind, **fields)
    reason = (
        f"attestation {predicate_type} by {found.subject} (issuer {found.issuer}), logged at index {entry.log_index}"
    )
    return _result(subject, source, verified=True, reason=reason, kind=kind, **fields)
