"""Rekor SET bundles of legacy cosign signatures: parsing, the signed entry timestamp, and the hashedrekord body."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from workers.errors import SignatureError
from workers.signatures.keys import decode_base64
from workers.signatures.simplesigning import loads_strict
from workers.signatures.trustroot import TransparencyLog, TrustRoot

MAX_BUNDLE_BYTES = 1024 * 1024
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class RekorEntry:
    """The ``dev.sigstore.cosign/bundle`` annotation: a log entry body and the log's promise to include it."""

    body: bytes
    integrated_time: int
    log_index: int
    log_id: str
    signed_entry_timestamp: bytes

    @property
    def integrated_at(self) -> datetime:
        """The integrated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.integrated_time, tz=UTC)


@dataclass(frozen=True)
class HashedRekord:
    """What a hashedrekord 0.0.1 entry records: the artifact's sha256, the signature and the verification material."""

    sha256: str
    signature: bytes
    public_key: bytes  # PEM: a certificate (keyless) or a public key (keyed)


def _int(value: object, what: str) -> int:
    # bool is an int in Python but not in JSON; a float is not a log index.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SignatureError(f"Rekor bundle {what} is not a non-negative integer")
    return value


def parse_rekor_bundle(text: str | bytes) -> RekorEntry:
    """Parse the SET bundle annotation strictly; SignatureError with the reason otherwise."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    doc = loads_strict(data, "Rekor bundle", MAX_BUNDLE_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("Rekor bundle is not a JSON object")
    payload = doc.get("Payload")
    if not isinstance(payload, dict):
        raise SignatureError("Rekor bundle has no Payload object")
    log_id = payload.get("logID")
    if not isinstance(log_id, str) or len(log_id) != 64 or not set(log_id.lower()) <= _HEX:
        raise SignatureError("Rekor bundle logID is not 64 hex characters")
    integrated_time = _int(payload.get("integratedTime"), "integratedTime")
    if integrated_time > 253402300799:  # beyond year 9999: no datetime, and no real log
        raise SignatureError("Rekor bundle integratedTime is out of range")
    return RekorEntry(
        body=decode_base64(payload.get("body"), "Rekor bundle body"),
        integrated_time=integrated_time,
        log_index=_int(payload.get("logIndex"), "logIndex"),
        log_id=log_id.lower(),
        signed_entry_timestamp=decode_base64(doc.get("SignedEntryTimestamp"), "Rekor SignedEntryTimestamp"),
    )


def set_canonical_bytes(entry: RekorEntry) -> bytes:
    """What the log signed: RFC 8785 JSON of {body (base64), integratedTime, logID (hex), logIndex}."""
    return rfc8785.dumps(
        {
            "body": base64.b64encode(entry.body).decode("ascii"),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id,
            "logIndex": entry.log_index,
        }
    )


def verify_set(entry: RekorEntry, trust_root: TrustRoot) -> TransparencyLog:
    """Check the signed entry timestamp with the trusted log whose id matches; return that log.

    The log key must have been valid at the integrated time (a retired key cannot vouch for new entries).
    """
    log = trust_root.log(entry.log_id)
    if log is None:
        raise SignatureError(f"SET is from log {entry.log_id}, which the trusted root ({trust_root.source}) lacks")
    if not log.valid_for.contains(entry.integrated_at):
        raise SignatureError(f"log {entry.log_id} key was not valid at the integrated time {entry.integrated_at}")
    if not log.key.verify(entry.signed_entry_timestamp, set_canonical_bytes(entry)):
        raise SignatureError(f"SET does not verify with the key of log {log.base_url or entry.log_id}")
    return log


def parse_hashedrekord(body: bytes) -> HashedRekord:
    """Parse a hashedrekord 0.0.1 entry body (the log entry the SET covers)."""
    doc = loads_strict(body, "Rekor entry body", MAX_BUNDLE_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("Rekor entry body is not a JSON object")
    if doc.get("kind") != "hashedrekord" or doc.get("apiVersion") != "0.0.1":
        kind, version = str(doc.get("kind"))[:40], str(doc.get("apiVersion"))[:20]
        raise SignatureError(f"Rekor entry is {kind} {version}, not hashedrekord 0.0.1")
    spec = doc.get("spec")
    data = spec.get("data") if isinstance(spec, dict) else None
    hashed = data.get("hash") if isinstance(data, dict) else None
    signature = spec.get("signature") if isinstance(spec, dict) else None
    public_key = signature.get("publicKey") if isinstance(signature, dict) else None
    if not isinstance(hashed, dict) or not isinstance(signature, dict) or not isinstance(public_key, dict):
        raise SignatureError("Rekor hashedrekord entry lacks spec.data.hash or spec.signature.publicKey")
    if hashed.get("algorithm") != "sha256":
        raise SignatureError(f"Rekor entry hash algorithm is {str(hashed.get('algorithm'))[:20]!r}, not sha256")
    value = hashed.get("value")
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise SignatureError("Rekor entry hash value is not 64 lowercase hex characters")
    return HashedRekord(
        sha256=value,
        signature=decode_base64(signature.get("content"), "Rekor entry signature"),
        public_key=decode_base64(public_key.get("content"), "Rekor entry public key"),
    )


def check_entry_matches(record: HashedRekord, payload: bytes, signature: bytes) -> None:
    """The logged entry must be this signature over these payload bytes (the key is compared by the caller)."""
    if record.sha256 != hashlib.sha256(payload).hexdigest():
        raise SignatureError("Rekor entry is for another payload (its sha256 differs from the payload's)")
    if record.signature != signature:
        raise SignatureError("Rekor entry records a different signature")


def verify_logged_signature(
    bundle: str, trust_root: TrustRoot, payload: bytes, signature: bytes
) -> tuple[RekorEntry, HashedRekord]:
    """Verify a SET bundle annotation and that its hashedrekord is ``signature`` over ``payload``.

    Returns the entry and the logged record; whose key the record names is for the caller to compare.
    """
    entry = parse_rekor_bundle(bundle)
    verify_set(entry, trust_root)
    record = parse_hashedrekord(entry.body)
    check_entry_matches(record, payload, signature)
    return entry, record


@dataclass(frozen=True)
class LoggedEnvelope:
    """What a ``dsse`` 0.0.1 or ``intoto`` 0.0.2 entry records of a DSSE envelope: payload hash, signatures, keys."""

    kind: str
    payload_sha256: str
    signatures: tuple[tuple[bytes, bytes], ...]  # (signature bytes, PEM certificate or key) per envelope signature


def _sha256_value(value: object, what: str) -> str:
    hashed = value if isinstance(value, dict) else {}
    if hashed.get("algorithm") != "sha256":
        raise SignatureError(f"Rekor entry {what} is not a sha256 hash")
    hex_value = hashed.get("value")
    if not isinstance(hex_value, str) or len(hex_value) != 64 or not set(hex_value) <= _HEX:
        raise SignatureError(f"Rekor entry {what} value is not 64 lowercase hex characters")
    return hex_value


def _logged_signatures(
    entries: object, sig_key: str, key_key: str, *, double_base64: bool
) -> list[tuple[bytes, bytes]]:
    if not isinstance(entries, list) or not entries or len(entries) > 16:
        raise SignatureError("Rekor entry lists no signatures (or too many)")
    found: list[tuple[bytes, bytes]] = []
    for index, item in enumerate(entries):
        if not isinstance(item, dict):
            raise SignatureError(f"Rekor entry signature {index} is not an object")
        signature = decode_base64(item.get(sig_key), f"Rekor entry signature {index}")
        if double_base64:
            # intoto 0.0.2 stores the envelope's base64 text base64-encoded once more.
            signature = decode_base64(signature.decode("ascii", errors="replace"), f"Rekor entry signature {index}")
        found.append((signature, decode_base64(item.get(key_key), f"Rekor entry verifier {index}")))
    return found


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_logged_envelope(body: bytes) -> LoggedEnvelope:
    """Parse the entry body a keyless attestation's SET covers: ``dsse`` 0.0.1 or ``intoto`` 0.0.2."""
    doc = loads_strict(body, "Rekor entry body", MAX_BUNDLE_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("Rekor entry body is not a JSON object")
    kind, version = doc.get("kind"), doc.get("apiVersion")
    spec = _object(doc.get("spec"))
    if kind == "dsse" and version == "0.0.1":
        signatures = _logged_signatures(spec.get("signatures"), "signature", "verifier", double_base64=False)
        return LoggedEnvelope("dsse", _sha256_value(spec.get("payloadHash"), "payloadHash"), tuple(signatures))
    if kind == "intoto" and version == "0.0.2":
        content = _object(spec.get("content"))
        envelope = _object(content.get("envelope"))
        signatures = _logged_signatures(envelope.get("signatures"), "sig", "publicKey", double_base64=True)
        return LoggedEnvelope("intoto", _sha256_value(content.get("payloadHash"), "payloadHash"), tuple(signatures))
    shown_kind, shown_version = str(kind)[:40], str(version)[:20]
    raise SignatureError(f"Rekor entry is {shown_kind} {shown_version}, not dsse 0.0.1 or intoto 0.0.2")


def verify_logged_envelope(
    bundle: str, trust_root: TrustRoot, payload: bytes, signature: bytes
) -> tuple[RekorEntry, bytes]:
    """Verify a SET bundle annotation and that its entry logs ``signature`` of an envelope of ``payload``.

    Returns the entry and the PEM the log recorded beside that signature (the caller compares the certificate).
    """
    entry = parse_rekor_bundle(bundle)
    verify_set(entry, trust_root)
    logged = parse_logged_envelope(entry.body)
    if logged.payload_sha256 != hashlib.sha256(payload).hexdigest():
        raise SignatureError("Rekor entry is for another payload (its payload sha256 differs)")
    for logged_signature, verifier in logged.signatures:
        if logged_signature == signature:
            return entry, verifier
    raise SignatureError("Rekor entry records a different signature")
