"""What one signature or attestation check found, as recorded on the image record and printed by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from workers.domain import Digest


class SignatureKind(StrEnum):
    """How an image was signed (the record's ``signatures[].kind``)."""

    COSIGN_KEYED = "cosign-keyed"  # legacy .sig tag, simple-signing payload, a public key
    COSIGN_KEYLESS = "cosign-keyless"  # legacy .sig tag with certificate, chain and Rekor SET; or a bundle
    ATTESTATION_KEYED = "attestation-keyed"  # DSSE envelope (.att tag or referrer) signed with a key
    ATTESTATION_KEYLESS = "attestation-keyless"  # DSSE envelope in a Sigstore bundle or .att with certificate
    NOTATION = "notation"


class SignatureFormat(StrEnum):
    """Where the signature was found and how it is wrapped."""

    LEGACY_TAG = "legacy-tag"  # <repo>:sha256-<hex>.sig / .att
    BUNDLE_REFERRER = "bundle-referrer"  # OCI 1.1 referrer (referrers API or the sha256-<hex> fallback index)
    NOTATION_REFERRER = "notation-referrer"  # a Notation signature referrer (API or the fallback index)


@dataclass(frozen=True)
class SignatureCheck:
    """One signature (or attestation) of one subject digest, verified or with the reason it is not."""

    kind: SignatureKind
    format: SignatureFormat
    subject: Digest
    verified: bool
    reason: str  # why it verified ("signature by key …") or why not ("payload is for sha256:…")
    source: str  # the tag or referrer manifest digest it came from
    identity: str | None = None  # certificate SAN (keyless) or key id/fingerprint (keyed)
    issuer: str | None = None  # OIDC issuer (keyless)
    log_index: int | None = None  # Rekor log index
    integrated_time: datetime | None = None  # Rekor integrated time (signing time)
    workflow_repository: str | None = None  # GitHub Actions extensions of the certificate, where present
    workflow_ref: str | None = None
    predicate_type: str | None = None  # attestations: the in-toto predicateType
    statement: dict[str, Any] | None = field(default=None, compare=False)  # attestations: the verified statement

    def to_json(self) -> dict[str, Any]:
        """The API representation (without the statement, which feeds provenance)."""
        return {
            "kind": self.kind.value,
            "format": self.format.value,
            "subject": self.subject,
            "verified": self.verified,
            "reason": self.reason,
            "source": self.source,
            "identity": self.identity,
            "issuer": self.issuer,
            "log_index": self.log_index,
            "time": self.integrated_time.isoformat() if self.integrated_time else None,
            "workflow_repository": self.workflow_repository,
            "workflow_ref": self.workflow_ref,
            "predicate_type": self.predicate_type,
        }


def printable(value: object, limit: int) -> str:
    """``value`` as text for a reason or note: control characters as ``?``, at most ``limit`` characters."""
    # Reasons quote untrusted content (digests, media types, certificate names) into records and logs.
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
