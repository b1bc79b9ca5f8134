"""Keyed cosign checks: legacy ``.sig`` simple-signing layers and ``.att`` DSSE envelopes against configured keys.

Simple signing, in order:
  1. a key is configured; the layer is the simple-signing media type and its blob matches its digest;
  2. the ``dev.cosignproject.cosign/signature`` annotation is standard base64 and not empty;
  3. it verifies over the exact payload bytes with one of the keys;
  4. when a trusted root is given and the layer carries a Rekor SET bundle: the SET verifies with the
     trusted log, and the logged hashedrekord is this payload, this signature and this key;
  5. the payload parses strictly, is a cosign container image signature, and names the subject digest.
DSSE, in order: the layer and envelope shape, the signature over PAE(payloadType, payload) with a key,
the payload type (in-toto), the Statement (v0.1 or v1) and a subject carrying the image digest.

Authentication comes before interpretation: nothing from the payload is believed before step 3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from workers.domain import Descriptor, Digest, sha256_digest
from workers.errors import SignatureError
from workers.signatures.intoto import IN_TOTO_PAYLOAD_TYPE, MAX_STATEMENT_BYTES, bind_statement, parse_statement
from workers.signatures.keys import (
    PublicKey,
    decode_base64,
    load_public_key,
    load_public_key_file,
    strict_b64decode,
)
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.signatures.rekor import RekorEntry, verify_logged_signature
from workers.signatures.simplesigning import SIMPLE_SIGNING_MEDIA_TYPE, bind_payload, loads_strict
from workers.signatures.trustroot import TrustRoot

__all__ = [
    "BUNDLE_ANNOTATION",
    "DSSE_MEDIA_TYPE",
    "IN_TOTO_PAYLOAD_TYPE",
    "SIGNATURE_ANNOTATION",
    "DsseEnvelope",
    "PublicKey",
    "layer_problem",
    "load_public_key",
    "load_public_key_file",
    "pae",
    "parse_dsse",
    "parse_statement",
    "verify_attestation_layer",
    "verify_dsse_envelope",
    "verify_keyed_signature",
    "verify_signature_layer",
]

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
# SBOM attestations run to megabytes; an envelope is bounded as the statement it carries is.
MAX_ENVELOPE_BYTES = MAX_STATEMENT_BYTES
# Each signature is tried with each key; a flood of signatures must not turn into a flood of verifications.
MAX_DSSE_SIGNATURES = 16


def _check(
    kind: SignatureKind,
    subject: Digest,
    source: str,
    *,
    verified: bool,
    reason: str,
    key: PublicKey | None = None,
    **extra: Any,
) -> SignatureCheck:
    return SignatureCheck(
        kind=kind,
        format=SignatureFormat.LEGACY_TAG,
        subject=subject,
        verified=verified,
        reason=reason,
        source=source,
        identity=key.key_id if key is not None else None,
        **extra,
    )


def _verifying_key(keys: Sequence[PublicKey], signature: bytes, data: bytes) -> PublicKey | None:
    return next((key for key in keys if key.verify(signature, data)), None)


def _check_logged(bundle: str, trust_root: TrustRoot, payload: bytes, signature: bytes, key: PublicKey) -> RekorEntry:
    entry, record = verify_logged_signature(bundle, trust_root, payload, signature)
    try:
        logged_key = serialization.load_pem_public_key(record.public_key)
    except ValueError:
        raise SignatureError("Rekor entry public key is not a PEM public key") from None
    spki = logged_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki != key.spki_der():
        raise SignatureError("Rekor entry records a different public key")
    return entry


def _verify_keyed(
    payload: bytes,
    signature_b64: str | None,
    subject: Digest,
    keys: Sequence[PublicKey],
    *,
    bundle: str | None,
    trust_root: TrustRoot | None,
) -> tuple[PublicKey, RekorEntry | None]:
    if not keys:
        raise SignatureError("no public keys are configured")
    signature = decode_base64(signature_b64, f"signature annotation {SIGNATURE_ANNOTATION}")
    key = _verifying_key(keys, signature, payload)
    if key is None:
        raise SignatureError(f"signature does not verify with any of the {len(keys)} configured keys")
    entry = None
    if trust_root is not None and bundle is not None:
        entry = _check_logged(bundle, trust_root, payload, signature, key)
    bind_payload(payload, subject)
    return key, entry


def verify_keyed_signature(
    payload: bytes,
    signature_b64: str | None,
    subject: Digest,
    keys: Sequence[PublicKey],
    *,
    source: str,
    bundle: str | None = None,
    trust_root: TrustRoot | None = None,
) -> SignatureCheck:
    """Verify a keyed simple-signing signature of ``subject``; the check says why when it does not verify.

    With ``trust_root`` and a ``bundle`` (the SET annotation), the Rekor entry is verified too and its log
    index and integrated time recorded; without them the signature stands on the key alone.
    """
    kind = SignatureKind.COSIGN_KEYED
    try:
        key, entry = _verify_keyed(payload, signature_b64, subject, keys, bundle=bundle, trust_root=trust_root)
    except SignatureError as exc:
        return _check(kind, subject, source, verified=False, reason=str(exc))
    reason = f"signed by key {key.name} ({key.algorithm})"
    if entry is None:
        return _check(kind, subject, source, verified=True, reason=reason, key=key)
    return _check(
        kind,
        subject,
        source,
        verified=True,
        reason=f"{reason}, logged at index {entry.log_index}",
        key=key,
        log_index=entry.log_index,
        integrated_time=entry.integrated_at,
    )


def layer_problem(layer: Descriptor, blob: bytes, media_type: str) -> str | None:
    """Why a legacy ``.sig``/``.att`` layer is not a ``media_type`` blob matching its digest, or None."""
    if layer.media_type != media_type:
        return f"layer media type is {layer.media_type[:120]!r}, not {media_type}"
    if sha256_digest(blob) != layer.digest:
        return f"layer blob does not match its digest {layer.digest}"
    return None


def verify_signature_layer(
    layer: Descriptor,
    blob: bytes,
    subject: Digest,
    keys: Sequence[PublicKey],
    *,
    source: str,
    trust_root: TrustRoot | None = None,
) -> SignatureCheck:
    """Verify one layer of a ``sha256-<hex>.sig`` manifest: its blob is the payload, the annotation the signature."""
    problem = layer_problem(layer, blob, SIMPLE_SIGNING_MEDIA_TYPE)
    if problem is not None:
        return _check(SignatureKind.COSIGN_KEYED, subject, source, verified=False, reason=problem)
    return verify_keyed_signature(
        blob,
        layer.annotations.get(SIGNATURE_ANNOTATION),
        subject,
        keys,
        source=source,
        bundle=layer.annotations.get(BUNDLE_ANNOTATION),
        trust_root=trust_root,
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body`` (byte lengths)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _dsse_base64(value: object, what: str) -> bytes:
    # DSSE allows standard or URL-safe base64; both are decoded strictly.
    if not isinstance(value, str) or not value:
        raise SignatureError(f"{what} is missing, empty or not a string")
    for altchars in (None, b"-_"):
        decoded = strict_b64decode(value, altchars)
        if decoded:
            return decoded
    raise SignatureError(f"{what} is not valid base64")


def _signature_of(entry: object, index: int) -> bytes:
    if not isinstance(entry, dict):
        raise SignatureError(f"DSSE signatures[{index}] is not an object")
    return _dsse_base64(entry.get("sig"), f"DSSE signatures[{index}].sig")


@dataclass(frozen=True)
class DsseEnvelope:
    """A parsed DSSE envelope: the payload type and bytes, and each signature (or why it could not be read)."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes | SignatureError, ...]

    @property
    def message(self) -> bytes:
        """What every signature covers: PAE(payloadType, payload)."""
        return pae(self.payload_type, self.payload)

    def signed(self, verifies: Callable[[bytes], bool], *, by: str) -> bytes:
        """The first signature ``verifies`` accepts; else SignatureError naming ``by`` (or the parse problems)."""
        problems = [str(sig) for sig in self.signatures if isinstance(sig, SignatureError)]
        for signature in self.signatures:
            if isinstance(signature, bytes) and verifies(signature):
                return signature
        if len(problems) == len(self.signatures):
            raise SignatureError("; ".join(problems[:3]))
        raise SignatureError(f"no DSSE signature verifies with {by}")

    def statement_about(self, subject: Digest) -> dict[str, Any]:
        """The in-toto Statement, bound to ``subject``; call only once a signature vouches for the envelope."""
        # The type is covered by PAE, so it is read only once the signature vouches for it.
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise SignatureError(f"DSSE payloadType is {self.payload_type[:80]!r}, not {IN_TOTO_PAYLOAD_TYPE}")
        statement = parse_statement(self.payload)
        bind_statement(statement, subject)
        return statement


def parse_dsse(envelope: bytes) -> DsseEnvelope:
    """Parse a DSSE envelope strictly (bounded size and signature count); SignatureError saying why not."""
    doc = loads_strict(envelope, "DSSE envelope", MAX_ENVELOPE_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("DSSE envelope is not a JSON object")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise SignatureError("DSSE envelope has no payloadType string")
    payload = _dsse_base64(doc.get("payload"), "DSSE payload")
    entries = doc.get("signatures")
    if not isinstance(entries, list) or not entries:
        raise SignatureError("DSSE envelope has no signatures")
    if len(entries) > MAX_DSSE_SIGNATURES:
        raise SignatureError(f"DSSE envelope has {len(entries)} signatures, more than {MAX_DSSE_SIGNATURES}")
    signatures: list[bytes | SignatureError] = []
    for index, entry in enumerate(entries):
        try:
            signatures.append(_signature_of(entry, index))
        except SignatureError as exc:
            signatures.append(exc)
    return DsseEnvelope(payload_type, payload, tuple(signatures))


def _verify_dsse(envelope: bytes, subject: Digest, keys: Sequence[PublicKey]) -> tuple[PublicKey, dict[str, Any]]:
    if not keys:
        raise SignatureError("no public keys are configured")
    parsed = parse_dsse(envelope)
    message = parsed.message
    found: list[PublicKey] = []

    def by_a_key(signature: bytes) -> bool:
        key = _verifying_key(keys, signature, message)
        if key is not None:
            found.append(key)
        return key is not None

    parsed.signed(by_a_key, by=f"any of the {len(keys)} configured keys")
    return found[0], parsed.statement_about(subject)


def verify_dsse_envelope(
    envelope: bytes,
    subject: Digest,
    keys: Sequence[PublicKey],
    *,
    source: str,
) -> SignatureCheck:
    """Verify a DSSE envelope holding an in-toto Statement about ``subject``; returns the statement when it does."""
    kind = SignatureKind.ATTESTATION_KEYED
    try:
        key, statement = _verify_dsse(envelope, subject, keys)
    except SignatureError as exc:
        return _check(kind, subject, source, verified=False, reason=str(exc))
    predicate_type = statement["predicateType"]
    return _check(
        kind,
        subject,
        source,
        verified=True,
        reason=f"attestation {predicate_type} signed by key {key.name} ({key.algorithm})",
        key=key,
        predicate_type=predicate_type,
        statement=statement,
    )


def verify_attestation_layer(
    layer: Descriptor,
    blob: bytes,
    subject: Digest,
    keys: Sequence[PublicKey],
    *,
    source: str,
) -> SignatureCheck:
    """Verify one layer of a ``sha256-<hex>.att`` manifest (a DSSE envelope blob)."""
    problem = layer_problem(layer, blob, DSSE_MEDIA_TYPE)
    if problem is not None:
        return _check(SignatureKind.ATTESTATION_KEYED, subject, source, verified=False, reason=problem)
    return verify_dsse_envelope(blob, subject, keys, source=source)
