"""X.509 path checks shared by the keyless cosign and Notation verifiers: leaf usage, CA constraints, path search."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

MAX_CHAIN_CERTIFICATES = 8
MAX_PATH_LENGTH = 4  # intermediates between leaf and root; Fulcio has one


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        # ValueError: names differ or bad signature parameters; TypeError: a key type that cannot sign.
        return False
    return True


def _valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _ca_problem(cert: x509.Certificate, when: datetime, below: int) -> str | None:
    """Why ``cert`` cannot issue a certificate with ``below`` intermediates under it at ``when``, or None."""
    if not _valid_at(cert, when):
        return (
            f"CA certificate {_name(cert)} was not valid at the integrated time {when.isoformat()}"
            f" (valid {cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
        )
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"certificate {_name(cert)} is not a CA (no basic constraints)"
    if not constraints.ca:
        return f"certificate {_name(cert)} is not a CA"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"CA certificate {_name(cert)} path length {constraints.path_length} is exceeded"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if usage.key_cert_sign else f"CA certificate {_name(cert)} may not sign certificates"


def leaf_problem(leaf: x509.Certificate, when: datetime) -> str | None:
    if not _valid_at(leaf, when):
        return (
            f"certificate was not valid at the integrated time {when.isoformat()}"
            f" (valid {leaf.not_valid_before_utc.isoformat()} to {leaf.not_valid_after_utc.isoformat()})"
        )
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "certificate lacks key usage or extended key usage"
    if not usage.digital_signature:
        return "certificate key usage lacks digitalSignature"
    if ExtendedKeyUsageOID.CODE_SIGNING not in purposes:
        return "certificate extended key usage lacks codeSigning"
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "certificate is a CA certificate, not a signing certificate"
    except x509.ExtensionNotFound:
        pass
    return None


def build_path(
    cert: x509.Certificate,
    *,
    candidates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    when: datetime,
    path: list[x509.Certificate],
    problems: list[str],
) -> list[x509.Certificate] | None:
    """Depth-first search for issuers up to a self-signed anchor; ``problems`` collects why branches failed."""
    for issuer in candidates:
        if issuer in path or issuer.subject != cert.issuer or not _signed_by(cert, issuer):
            continue
        problem = _ca_problem(issuer, when, len(path) - 1)
        if problem is not None:
            problems.append(problem)
            continue
        if issuer in anchors and issuer.subject == issuer.issuer and _signed_by(issuer, issuer):
            return [*path, issuer]
        if len(path) <= MAX_PATH_LENGTH:
            found = build_path(
                issuer, candidates=candidates, anchors=anchors, when=when, path=[*path, issuer], problems=problems
            )
            if found is not None:
                return found
    return None
