"""Fetch Tollgate's verdict attestations of an image from the registry and verify them with a public key.

Both published copies are read: the referrer manifest (referrers API, else the ``sha256-<hex>`` fallback
index) and Tollgate's layer of the legacy ``sha256-<hex>.att`` manifest. Each DSSE envelope must verify with
one of the keys over PAE, carry an in-toto Statement whose subject is the image digest and whose predicate is
the SLSA Verification Summary. The image counts as verified only when at least one copy was found and every
copy found verifies: a tampered copy next to a good one is reported, not outvoted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.domain import Digest, MediaType, parse_digest
from workers.errors import IntegrityError, NotFound, RegistryProtocolError, SignatureError, UnsupportedMediaType
from workers.provenance.publish import (
    VERDICT_ARTIFACT_TYPE,
    is_tollgate_layer,
    subject_tags,
)
from workers.provenance.verdict import VSA_PREDICATE
from workers.registry import RegistryClient
from workers.signatures.keyed import DSSE_MEDIA_TYPE, DsseEnvelope, parse_dsse
from workers.signatures.keys import PublicKey

MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_CANDIDATES = 16


@dataclass(frozen=True)
class VerdictCheck:
    """One copy of the verdict attestation: where it was, whether it verified, and what it says."""

    source: str
    verified: bool
    reason: str
    key: str | None = None
    statement: dict[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """For ``tollgate attestation verify --format json``."""
        predicate = (self.statement or {}).get("predicate") or {}
        tollgate = predicate.get("tollgate") or {}
        return {
            "source": self.source,
            "verified": self.verified,
            "reason": self.reason,
            "key": self.key,
            "verification_result": predicate.get("verificationResult"),
            "time_verified": predicate.get("timeVerified"),
            "verdict": tollgate.get("verdict"),
            "action": tollgate.get("action"),
            "statement": self.statement,
        }


@dataclass(frozen=True)
class VerdictVerification:
    """Every copy found for one image digest."""

    subject: Digest
    checks: tuple[VerdictCheck, ...]

    @property
    def verified(self) -> bool:
        """At least one copy, and every copy verifies."""
        return bool(self.checks) and all(c.verified for c in self.checks)


def _signing_key(envelope: bytes, keys: Sequence[PublicKey]) -> tuple[PublicKey, DsseEnvelope]:
    """The key one of the envelope's signatures verifies with (over PAE), and the parsed envelope."""
    parsed = parse_dsse(envelope)
    message = parsed.message
    for key in keys:
        if any(isinstance(s, bytes) and key.verify(s, message) for s in parsed.signatures):
            return key, parsed
    raise SignatureError(f"no DSSE signature verifies with any of the {len(keys)} keys")


def check_envelope(envelope: bytes, subject: Digest, keys: Sequence[PublicKey], source: str) -> VerdictCheck:
    """Verify one DSSE envelope as Tollgate's verdict about ``subject``; never raises."""
    try:
        key, parsed = _signing_key(envelope, keys)
        statement = parsed.statement_about(subject)
    except SignatureError as exc:
        return VerdictCheck(source, False, str(exc))
    if statement.get("predicateType") != VSA_PREDICATE:
        shown = str(statement.get("predicateType"))[:100]
        return VerdictCheck(source, False, f"predicateType is {shown!r}, not {VSA_PREDICATE}", key.name, statement)
    result = (statement.get("predicate") or {}).get("verificationResult")
    reason = f"verdict {result} signed by key {key.name} ({key.key_id[:16]})"
    return VerdictCheck(source, True, reason, key.name, statement)


def _manifest(client: RegistryClient, repository: str, reference: str) -> dict[str, Any] | None:
    try:
        fetched = client.get_manifest(repository, reference)
    except NotFound:
        return None
    except (IntegrityError, RegistryProtocolError, UnsupportedMediaType):
        return None
    try:
        document = json.loads(fetched.raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _blob(client: RegistryClient, repository: str, layer: Any) -> bytes | str:
    """The verified blob of a DSSE layer descriptor, or the reason it cannot be read."""
    if not isinstance(layer, dict) or layer.get("mediaType") != DSSE_MEDIA_TYPE:
        return "the layer is not a DSSE envelope"
    try:
        digest = parse_digest(str(layer.get("digest")))
        return client.get_blob(repository, digest, max_bytes=MAX_ENVELOPE_BYTES)
    except ValueError:
        return "the layer has no valid digest"
    except (NotFound, IntegrityError, RegistryProtocolError) as exc:
        return f"the envelope cannot be read: {exc}"


def _referrer_digests(client: RegistryClient, repository: str, subject: Digest, fallback_tag: str) -> list[Digest]:
    try:
        listed = client.referrers(repository, subject, artifact_type=VERDICT_ARTIFACT_TYPE)
    except (IntegrityError, RegistryProtocolError):
        listed = None
    if listed is None:
        index = _manifest(client, repository, fallback_tag)
        if index is None or index.get("mediaType") != MediaType.OCI_INDEX:
            return []
        listed = index.get("manifests") if isinstance(index.get("manifests"), list) else []
    out: list[Digest] = []
    for entry in (listed or [])[:256]:
        if isinstance(entry, dict) and entry.get("artifactType") == VERDICT_ARTIFACT_TYPE:
            try:
                out.append(parse_digest(str(entry.get("digest"))))
            except ValueError:
                continue
    return out[:MAX_CANDIDATES]


def verify_verdict(
    client: RegistryClient, repository: str, subject: Digest, keys: Sequence[PublicKey]
) -> VerdictVerification:
    """Find and verify every copy of Tollgate's verdict about ``repository@subject``.

    Registry outages raise (TransientError); everything wrong with what is found is a failed check.
    """
    fallback_tag, attestation_tag = subject_tags(subject)
    checks: list[VerdictCheck] = []
    for digest in _referrer_digests(client, repository, subject, fallback_tag):
        source = f"referrer {digest}"
        manifest = _manifest(client, repository, digest)
        if manifest is None:
            checks.append(VerdictCheck(source, False, "the referrer manifest is missing or unreadable"))
            continue
        named = manifest.get("subject")
        if not isinstance(named, dict) or named.get("digest") != subject:
            checks.append(VerdictCheck(source, False, "the referrer's subject is not this image"))
            continue
        layers = manifest.get("layers")
        if not isinstance(layers, list) or len(layers) != 1:
            checks.append(VerdictCheck(source, False, "a verdict referrer has exactly one layer"))
            continue
        blob = _blob(client, repository, layers[0])
        checks.append(
            VerdictCheck(source, False, blob) if isinstance(blob, str) else check_envelope(blob, subject, keys, source)
        )
    att = _manifest(client, repository, attestation_tag)
    layers = att.get("layers") if att is not None else None
    for index, layer in enumerate(layers if isinstance(layers, list) else []):
        annotations = layer.get("annotations") if isinstance(layer, dict) else None
        if not isinstance(annotations, dict) or not is_tollgate_layer(annotations):
            continue
        source = f"{attestation_tag} layer {index}"
        blob = _blob(client, repository, layer)
        checks.append(
            VerdictCheck(source, False, blob) if isinstance(blob, str) else check_envelope(blob, subject, keys, source)
        )
    return VerdictVerification(subject, tuple(checks))
