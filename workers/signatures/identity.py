"""Who a Fulcio certificate names (SAN, OIDC issuer, GitHub workflow) and the identity policy keyless checks apply."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from workers.errors import ConfigError, SignatureError

_FULCIO = "1.3.6.1.4.1.57264.1."
OID_ISSUER_V1 = ObjectIdentifier(_FULCIO + "1")  # raw bytes, deprecated but still issued
OID_WORKFLOW_SHA = ObjectIdentifier(_FULCIO + "3")
OID_WORKFLOW_REPOSITORY = ObjectIdentifier(_FULCIO + "5")
OID_WORKFLOW_REF = ObjectIdentifier(_FULCIO + "6")
OID_OTHERNAME_SAN = ObjectIdentifier(_FULCIO + "7")
OID_ISSUER_V2 = ObjectIdentifier(_FULCIO + "8")  # DER UTF8String, like every v2 extension below
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier(_FULCIO + "12")
OID_SOURCE_REPOSITORY_DIGEST = ObjectIdentifier(_FULCIO + "13")
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier(_FULCIO + "14")
_GITHUB_PREFIX = "https://github.com/"


@dataclass(frozen=True)
class CertificateIdentity:
    """The identity a Fulcio leaf certifies: the SAN, the OIDC issuer and, for CI, the workflow it ran in."""

    subject: str
    issuer: str | None
    workflow_repository: str | None = None
    workflow_ref: str | None = None
    workflow_sha: str | None = None


def der_utf8_string(data: bytes) -> str:
    """Decode one DER UTF8String (tag 0x0C), as Fulcio encodes its v2 extensions; SignatureError otherwise."""
    if len(data) < 2 or data[0] != 0x0C:
        raise SignatureError("certificate extension is not a DER UTF8String")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise SignatureError("certificate extension has a bad DER length")
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if offset + length != len(data):
        raise SignatureError("certificate extension DER length does not match its size")
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("certificate extension is not valid UTF-8") from None


def _extension_bytes(cert: x509.Certificate, oid: ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _raw(cert: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    data = _extension_bytes(cert, oid)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError(f"certificate extension {oid.dotted_string} is not valid UTF-8") from None


def _der(cert: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    data = _extension_bytes(cert, oid)
    return None if data is None else der_utf8_string(data)


def certificate_subject(cert: x509.Certificate) -> str:
    """The identity in the SAN: an email, a URI, or Sigstore's otherName username; SignatureError when none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SignatureError("certificate has no subject alternative name") from None
    for general_name in san:
        if isinstance(general_name, x509.RFC822Name | x509.UniformResourceIdentifier):
            return general_name.value
        if isinstance(general_name, x509.OtherName) and general_name.type_id == OID_OTHERNAME_SAN:
            return der_utf8_string(general_name.value)
    raise SignatureError("certificate SAN has no email, URI or Sigstore otherName")


def _github_repository(source_uri: str | None) -> str | None:
    # The v2 extension is a URL; only an exact https://github.com/ prefix maps onto the v1 "owner/repo" form
    # (no port, userinfo, trailing slash or query folded away: what is left must equal the policy's value).
    if source_uri is None or not source_uri.startswith(_GITHUB_PREFIX):
        return None
    return source_uri.removeprefix(_GITHUB_PREFIX) or None


def _v1_else_v2(v1: str | None, v2: str | None) -> str | None:
    return v1 if v1 is not None else v2


def certificate_identity(cert: x509.Certificate) -> CertificateIdentity:
    """Read the identity a Fulcio leaf certifies; SignatureError when it is malformed.

    Every extension read is parsed, used or not: a malformed one, or v1 and v2 issuers that disagree,
    make the certificate ambiguous, and an ambiguous certificate names nobody.
    """
    issuer_v1 = _raw(cert, OID_ISSUER_V1)
    issuer_v2 = _der(cert, OID_ISSUER_V2)
    if issuer_v1 is not None and issuer_v2 is not None and issuer_v1 != issuer_v2:
        # Fulcio writes the same issuer into both; disagreeing ones make the certificate ambiguous.
        raise SignatureError(f"certificate issuer extensions disagree ({issuer_v1!r} and {issuer_v2!r})")
    return CertificateIdentity(
        subject=certificate_subject(cert),
        issuer=issuer_v2 if issuer_v2 is not None else issuer_v1,
        workflow_repository=_v1_else_v2(
            _raw(cert, OID_WORKFLOW_REPOSITORY), _github_repository(_der(cert, OID_SOURCE_REPOSITORY_URI))
        ),
        workflow_ref=_v1_else_v2(_raw(cert, OID_WORKFLOW_REF), _der(cert, OID_SOURCE_REPOSITORY_REF)),
        workflow_sha=_v1_else_v2(_raw(cert, OID_WORKFLOW_SHA), _der(cert, OID_SOURCE_REPOSITORY_DIGEST)),
    )


@dataclass(frozen=True)
class IdentityPolicy:
    """Which keyless signers to accept: an issuer and exactly one of an exact subject and a subject regexp.

    The regexp must match the whole subject (``re.fullmatch``): cosign's ``--certificate-identity-regexp``
    searches unanchored, which lets ``https://github.com/org/`` match other repositories that merely contain
    it; write ``.*`` where a prefix or suffix may vary. ``workflow_repository`` and ``workflow_ref``, when
    set, must be present in the certificate and equal. Like cosign's ``--certificate-identity``/
    ``--certificate-oidc-issuer``, a policy without a subject constraint or without an issuer is refused:
    it would accept anyone with an OIDC account. Bundles apply it through sigstore (``bundles.SigstorePolicy``).
    """

    issuer: str
    subject: str | None = None
    subject_regexp: str | None = None
    workflow_repository: str | None = None
    workflow_ref: str | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("identity policy needs an issuer")
        if (self.subject is None) == (self.subject_regexp is None):
            # Both at once reads as either-or to one operator and as both-must-hold to another.
            raise ConfigError("identity policy needs a subject or a subject_regexp (exactly one of them)")
        for name in ("subject", "subject_regexp", "workflow_repository", "workflow_ref"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"identity policy {name} is empty or not a string")
        if self.subject_regexp is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.subject_regexp))
            except re.error as exc:
                raise ConfigError(
                    f"identity policy subject_regexp {self.subject_regexp!r} is invalid (does not compile: {exc})"
                ) from None

    def describe(self) -> str:
        """The policy in one line, for reasons."""
        who = self.subject if self.subject is not None else f"/{self.subject_regexp}/"
        parts = [f"{who} from {self.issuer}"]
        if self.workflow_repository:
            parts.append(f"repository {self.workflow_repository}")
        if self.workflow_ref:
            parts.append(f"ref {self.workflow_ref}")
        return ", ".join(parts)

    def mismatch(self, found: CertificateIdentity) -> str | None:
        """None when ``found`` satisfies the policy, else the reason ("identity X does not match ...")."""
        who = f"identity {found.subject}"
        if self.subject is not None and found.subject != self.subject:
            return f"{who} does not match subject {self.subject}"
        if self._pattern is not None and not self._pattern.fullmatch(found.subject):
            return f"{who} does not match subject regexp {self.subject_regexp}"
        if found.issuer != self.issuer:
            return f"{who} does not match issuer {self.issuer} (certificate issuer {found.issuer})"
        if self.workflow_repository is not None and found.workflow_repository != self.workflow_repository:
            return (
                f"{who} does not match workflow repository {self.workflow_repository}"
                f" (certificate has {found.workflow_repository})"
            )
        if self.workflow_ref is not None and found.workflow_ref != self.workflow_ref:
            return f"{who} does not match workflow ref {self.workflow_ref} (certificate has {found.workflow_ref})"
        return None
