"""Verify everything that signs or attests one image digest against a repository's trust policy.

:func:`verify_image` discovers the image's legacy ``.sig``/``.att`` tags, Sigstore bundle and Notation referrers
(:mod:`workers.signatures.discovery`) and checks each one:

- a ``.sig`` layer with a certificate annotation is keyless: verified offline against the trusted root
  (:mod:`legacy_keyless`), then its signer against each configured identity; any other ``.sig`` layer is
  keyed, verified with the configured keys (and its Rekor SET, when it carries one, against the root);
- a ``.att`` layer is a DSSE envelope verified with the configured keys, or, when it carries a certificate,
  offline like a keyless ``.sig`` (its SET covers a ``dsse`` or ``intoto`` entry) and then the identities;
- a bundle referrer is verified with sigstore-python once per configured identity, the first that
  accepts it wins (keyed bundles are not supported by sigstore and fail with its reason);
- a Notation referrer (JWS) is verified against the policy's Notation trust store and identities
  (:mod:`notation`).

Bad signatures never raise: each becomes a :class:`SignatureCheck` saying why it failed. Only the
registry can make this raise (unreachable: transient, so the job retries rather than record "unsigned").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from workers.domain import Descriptor, Digest
from workers.policy import SIGNATURE_KINDS, TrustPolicy
from workers.registry import RegistryClient
from workers.signatures.bundles import BundleVerifier
from workers.signatures.discovery import (
    BundleReferrer,
    Discovered,
    DiscoveryNote,
    LegacyLayer,
    NotationReferrer,
    discover,
)
from workers.signatures.identity import CertificateIdentity, IdentityPolicy
from workers.signatures.keyed import verify_attestation_layer, verify_signature_layer
from workers.signatures.legacy_keyless import (
    CERTIFICATE_ANNOTATION,
    verify_keyless_attestation_layer,
    verify_keyless_layer,
)
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.signatures.notation import NotationTrust, verify_notation_envelope
from workers.signatures.trustroot import TrustRoot, load_trust_root, production_trust_root

log = logging.getLogger(__name__)

NO_IDENTITIES = "no keyless identities are configured"


@dataclass(frozen=True)
class SignatureReport:
    """Every check of one image digest under one trust policy, and whether the policy is satisfied."""

    subject: Digest
    checks: tuple[SignatureCheck, ...]
    notes: tuple[DiscoveryNote, ...] = ()  # what discovery found unusable (wrong media types, bad subjects …)

    @property
    def verified(self) -> tuple[SignatureCheck, ...]:
        """The verified signatures (attestations excluded: they say something about the image, not who signed)."""
        return tuple(c for c in self.checks if c.verified and c.kind in SIGNATURE_KINDS)

    @property
    def satisfied(self) -> bool:
        """True when at least one signature verified against the policy's signers."""
        return bool(self.verified)

    @property
    def attestations(self) -> tuple[SignatureCheck, ...]:
        """The verified attestations, with their statements (for provenance)."""
        return tuple(c for c in self.checks if c.verified and c.kind not in SIGNATURE_KINDS)


SignatureVerifier = Callable[[RegistryClient, str, Digest, TrustPolicy], SignatureReport]
"""What the pipeline calls for a registry image: ``verify_image`` or a test double."""


@dataclass(frozen=True)
class _Roots:
    legacy: TrustRoot
    bundles: BundleVerifier


@lru_cache(maxsize=8)
def _roots_cached(path: Path | None, stamp: tuple[int, int] | None) -> _Roots:
    del stamp  # part of the cache key only: an edited root file is read again
    legacy = load_trust_root(path) if path is not None else production_trust_root()
    return _Roots(legacy, BundleVerifier.from_trusted_root(path))


def _roots(path: Path | None) -> _Roots:
    """Both views of the trusted root (the legacy verifier's and sigstore's), loaded once per file version."""
    stamp = None
    if path is not None:
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None  # loading reports the error with the file name
    return _roots_cached(path, stamp)


def _descriptor(layer: LegacyLayer) -> Descriptor:
    return Descriptor(
        media_type=layer.media_type, digest=layer.digest, size=len(layer.blob), annotations=layer.annotations
    )


def _apply_identities(check: SignatureCheck, identities: Sequence[IdentityPolicy]) -> SignatureCheck:
    """A cryptographically verified keyless check, kept verified only when one of ``identities`` allows it."""
    if not check.verified or check.identity is None:
        return check
    if not identities:
        return replace(check, verified=False, reason=f"{NO_IDENTITIES} ({check.reason})")
    found = CertificateIdentity(
        subject=check.identity,
        issuer=check.issuer,
        workflow_repository=check.workflow_repository,
        workflow_ref=check.workflow_ref,
    )
    mismatches = [m for m in (policy.mismatch(found) for policy in identities) if m is not None]
    if len(mismatches) < len(identities):
        return check
    others = f" (and {len(mismatches) - 1} other identities)" if len(mismatches) > 1 else ""
    return replace(check, verified=False, reason=f"signer not allowed: {mismatches[0]}{others}")


def check_signature(layer: LegacyLayer, subject: Digest, trust: TrustPolicy, roots: _Roots) -> SignatureCheck:
    """One ``.sig`` layer: keyless when it carries a certificate, else keyed."""
    descriptor = _descriptor(layer)
    if CERTIFICATE_ANNOTATION in layer.annotations:
        # Verified once without an identity (records who signed), then each configured identity is tried.
        check = verify_keyless_layer(descriptor, layer.blob, subject, roots.legacy, policy=None, source=layer.source)
        return _apply_identities(check, trust.identities)
    return verify_signature_layer(
        descriptor, layer.blob, subject, trust.keys, source=layer.source, trust_root=roots.legacy
    )


def check_attestation(layer: LegacyLayer, subject: Digest, trust: TrustPolicy, roots: _Roots) -> SignatureCheck:
    """One ``.att`` layer: keyless (offline, like a ``.sig``) when it carries a certificate, else keyed DSSE."""
    descriptor = _descriptor(layer)
    if CERTIFICATE_ANNOTATION in layer.annotations:
        check = verify_keyless_attestation_layer(
            descriptor, layer.blob, subject, roots.legacy, policy=None, source=layer.source
        )
        return _apply_identities(check, trust.identities)
    return verify_attestation_layer(descriptor, layer.blob, subject, trust.keys, source=layer.source)


def check_bundle(bundle: BundleReferrer, subject: Digest, trust: TrustPolicy, roots: _Roots) -> SignatureCheck:
    """One bundle referrer, tried with each configured identity until one accepts it."""
    if not trust.identities:
        return SignatureCheck(
            kind=SignatureKind.COSIGN_KEYLESS,
            format=SignatureFormat.BUNDLE_REFERRER,
            subject=subject,
            verified=False,
            reason=f"{NO_IDENTITIES} (Sigstore bundles are keyless)",
            source=bundle.source,
        )
    first: SignatureCheck | None = None
    for identity in trust.identities:
        check = roots.bundles.verify(bundle.bundle, subject, identity, source=bundle.source)
        if check.verified:
            return check
        first = first or check
    assert first is not None
    if len(trust.identities) > 1:
        return replace(first, reason=f"{first.reason} (and {len(trust.identities) - 1} other identities)")
    return first


def check_notation(referrer: NotationReferrer, subject: Digest, trust: TrustPolicy, now: datetime) -> SignatureCheck:
    """One Notation referrer, against the policy's Notation trust store and identities."""
    notation = trust.notation or NotationTrust((), (), "no notation trust store")
    return verify_notation_envelope(
        referrer.media_type, referrer.envelope, subject, notation, now=now, source=referrer.source
    )


def verify_discovered(found: Discovered, trust: TrustPolicy, *, now: datetime | None = None) -> SignatureReport:
    """Check everything ``discover`` found; no registry access (used by :func:`verify_image` and tests).

    ``now`` is when Notation certificate chains are checked (they have no authentic signing time).
    """
    roots = _roots(trust.trusted_root)
    subject = found.subject
    checks = [check_signature(layer, subject, trust, roots) for layer in found.signatures]
    checks += [check_attestation(layer, subject, trust, roots) for layer in found.attestations]
    checks += [check_bundle(bundle, subject, trust, roots) for bundle in found.bundles]
    moment = now or datetime.now(UTC)
    checks += [check_notation(referrer, subject, trust, moment) for referrer in found.notations]
    return SignatureReport(subject=subject, checks=tuple(checks), notes=found.notes)


def verify_image(client: RegistryClient, repository: str, subject: Digest, trust: TrustPolicy) -> SignatureReport:
    """Discover and verify every signature and attestation of ``repository@subject`` under ``trust``.

    Raises only what the registry raises (``TransientError`` when it cannot be reached, auth errors);
    a trusted root that cannot be loaded is a ConfigError (the policy loader checks it first).
    """
    found = discover(client, repository, subject)
    report = verify_discovered(found, trust)
    for note in report.notes:
        log.info("%s@%s: signature discovery: %s: %s", repository, subject, note.where, note.reason)
    return report
