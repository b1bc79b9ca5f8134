"""Notation (Notary Project) JWS signatures: the envelope, its X.509 chain to an operator trust store, identities.

A Notation signature is an OCI 1.1 referrer (``artifactType application/vnd.cncf.notary.signature``) whose one
layer is the envelope. Checked here, in order, for the ``notary.x509`` signing scheme (shared/docs/PROTOCOLS.md §6):
  1. the envelope is flattened JWS JSON with exactly ``payload``, ``protected``, ``header`` and ``signature``;
  2. the protected header: a supported ``alg``, ``cty`` the Notary payload type, ``crit`` naming the signing
     scheme and nothing this verifier does not understand, a signing time, an expiry not passed;
  3. ``alg`` fits the leaf key (ES256/384/512 by curve, PS256/384/512 by RSA size): no algorithm substitution;
  4. the signature verifies over ``ASCII(protected '.' payload)`` exactly as they appear in the envelope;
  5. the leaf is a code-signing certificate and, through the ``x5c`` intermediates, chains to a certificate
     of the trust store; every certificate is checked *now*: ``notary.x509`` has no authentic signing time
     (RFC 3161 countersignatures are not supported, so a signature whose chain expired no longer verifies);
  6. the payload's ``targetArtifact.digest`` is the subject;
  7. the leaf's subject holds every attribute of one trusted identity (Notation's ``x509.subject`` rule).
``notary.x509.signingAuthority`` signatures and COSE envelopes are recorded as unsupported, never verified.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from workers.domain import Digest
from workers.errors import ConfigError, SignatureError
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind, printable
from workers.signatures.simplesigning import loads_strict
from workers.signatures.x509path import MAX_CHAIN_CERTIFICATES, build_path, leaf_problem

NOTATION_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
JWS_MEDIA_TYPE = "application/jose+json"
COSE_MEDIA_TYPE = "application/cose"
PAYLOAD_CONTENT_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
KNOWN_CRITICAL = frozenset({SCHEME, AUTHENTIC_SIGNING_TIME, EXPIRY})
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_TRUST_STORE_CERTIFICATES = 256
ANY_IDENTITY = "*"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVE_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_ALG = {2048: "PS256", 3072: "PS384", 4096: "PS512"}
_ATTRIBUTES = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
}
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class NotationIdentity:
    """A trusted X.509 subject: every (attribute, value) listed must be in the leaf's subject."""

    text: str
    attributes: frozenset[tuple[str, str]]  # (dotted OID, value); empty for ``*`` (any signer the store vouches for)

    def accepts(self, subject: x509.Name) -> bool:
        """True when ``subject`` holds every attribute of this identity."""
        held = {(attr.oid.dotted_string, str(attr.value)) for attr in subject}
        return self.attributes <= held


def parse_identity(text: str) -> NotationIdentity:
    """``*`` or an X.509 subject such as ``C=US, O=Acme, CN=release`` (optionally ``x509.subject:`` prefixed)."""
    value = text.strip().removeprefix("x509.subject:").strip()
    if value == ANY_IDENTITY:
        return NotationIdentity(text, frozenset())
    attributes: set[tuple[str, str]] = set()
    for part in _UNESCAPED_COMMA.split(value):
        name, sep, raw = part.partition("=")
        oid = _ATTRIBUTES.get(name.strip().upper())
        if not sep or oid is None or not raw.strip():
            known = ", ".join(sorted(_ATTRIBUTES))
            raise ConfigError(f"notation identity {text[:120]!r}: {part.strip()[:40]!r} is not ATTR=value ({known})")
        attributes.add((oid.dotted_string, raw.strip().replace("\\,", ",")))
    return NotationIdentity(text, frozenset(attributes))


@dataclass(frozen=True)
class NotationTrust:
    """The operator's trust store (CA certificates) and the identities allowed to sign."""

    certificates: tuple[x509.Certificate, ...]
    identities: tuple[NotationIdentity, ...]
    source: str

    @property
    def configured(self) -> bool:
        """True when a trust store was given (identities alone cannot verify anything)."""
        return bool(self.certificates)


def load_trust_store(path: Path) -> tuple[x509.Certificate, ...]:
    """PEM certificates from a file, or from every ``*.pem``/``*.crt`` file of a directory; ConfigError if none."""
    files = sorted(p for p in path.iterdir() if p.suffix in {".pem", ".crt"}) if path.is_dir() else [path]
    certificates: list[x509.Certificate] = []
    for file in files:
        try:
            certificates.extend(x509.load_pem_x509_certificates(file.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"notation trust store {file}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"notation trust store {file}: not PEM certificates ({str(exc)[:120]})") from None
    if not certificates:
        raise ConfigError(f"notation trust store {path}: no certificates")
    if len(certificates) > MAX_TRUST_STORE_CERTIFICATES:
        raise ConfigError(f"notation trust store {path}: more than {MAX_TRUST_STORE_CERTIFICATES} certificates")
    for cert in certificates:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigError(f"notation trust store {path}: {cert.subject.rfc4514_string()} is not a CA certificate")
    return tuple(certificates)


def _b64url(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise SignatureError(f"JWS {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError(f"JWS {what} is not base64url") from None


def _rfc3339(value: object, what: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise SignatureError(f"JWS header {what} is not an RFC 3339 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SignatureError(f"JWS header {what} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise SignatureError(f"JWS header {what} has no time zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Header:
    alg: str
    signing_time: datetime


def _protected_header(raw: bytes, now: datetime) -> _Header:
    header = loads_strict(raw, "JWS protected header", 64 * 1024)
    if not isinstance(header, dict):
        raise SignatureError("JWS protected header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str) or not re.fullmatch(r"(ES|PS)(256|384|512)", alg):
        raise SignatureError(
            f"JWS alg {printable(alg, 20)!r} is not one Notation allows (PS256/384/512, ES256/384/512)"
        )
    if header.get("cty") != PAYLOAD_CONTENT_TYPE:
        raise SignatureError(f"JWS cty is {printable(header.get('cty'), 80)!r}, not {PAYLOAD_CONTENT_TYPE}")
    critical = header.get("crit")
    if not isinstance(critical, list) or not all(isinstance(c, str) for c in critical) or SCHEME not in critical:
        raise SignatureError(f"JWS crit must be a list naming {SCHEME}")
    unknown = [c for c in critical if c not in KNOWN_CRITICAL]
    if unknown:
        # RFC 7515 §4.1.11: a critical header the verifier does not understand makes the signature invalid.
        raise SignatureError(f"JWS crit names headers this verifier does not understand: {printable(unknown, 120)}")
    missing = [c for c in critical if c not in header]
    if missing:
        raise SignatureError(f"JWS crit names headers that are absent: {printable(missing, 120)}")
    for name in (EXPIRY, AUTHENTIC_SIGNING_TIME):
        if name in header and name not in critical:
            raise SignatureError(f"JWS header {name} must be listed in crit")
    scheme = header.get(SCHEME)
    if scheme == "notary.x509.signingAuthority":
        raise SignatureError(
            "signing scheme notary.x509.signingAuthority is not supported (it needs a signing authority)"
        )
    if scheme != "notary.x509":
        raise SignatureError(f"signing scheme {printable(scheme, 60)!r} is not notary.x509")
    signing_time = _rfc3339(header.get(SIGNING_TIME), SIGNING_TIME)
    if EXPIRY in header and _rfc3339(header[EXPIRY], EXPIRY) <= now:
        raise SignatureError(f"signature expired at {header[EXPIRY]}")
    return _Header(alg=alg, signing_time=signing_time)


def _certificates(header: object) -> list[x509.Certificate]:
    chain = header.get("x5c") if isinstance(header, dict) else None
    if not isinstance(chain, list) or not chain or len(chain) > MAX_CHAIN_CERTIFICATES + 1:
        raise SignatureError(f"JWS header x5c must list 1 to {MAX_CHAIN_CERTIFICATES + 1} certificates")
    out: list[x509.Certificate] = []
    for index, value in enumerate(chain):
        if not isinstance(value, str):
            raise SignatureError(f"JWS x5c[{index}] is not a base64 DER certificate (not a string)")
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
            _ = cert.extensions  # parsed lazily: a malformed extension must fail here, as a reason
            cert.public_key()
        except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
            raise SignatureError(f"JWS x5c[{index}] is not a base64 DER certificate ({str(exc)[:80]})") from None
        out.append(cert)
    return out


def _verify_jws_signature(leaf: x509.Certificate, alg: str, signature: bytes, signing_input: bytes) -> None:
    key = leaf.public_key()
    algorithm = _HASHES[alg[2:]]()
    if isinstance(key, ec.EllipticCurvePublicKey):
        expected = _CURVE_ALG.get(key.curve.name)
        if alg != expected:
            raise SignatureError(f"JWS alg {alg} does not fit the certificate's {key.curve.name} key ({expected})")
        size = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            raise SignatureError(f"JWS {alg} signature is {len(signature)} bytes, not {2 * size}")
        # JWS carries ECDSA as r||s; cryptography wants DER.
        der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
        try:
            key.verify(der, signing_input, ec.ECDSA(algorithm))
        except InvalidSignature:
            raise SignatureError("JWS signature does not verify with the certificate's key") from None
        return
    if isinstance(key, rsa.RSAPublicKey):
        expected = _RSA_ALG.get(key.key_size)
        if alg != expected:
            raise SignatureError(f"JWS alg {alg} does not fit the certificate's RSA-{key.key_size} key ({expected})")
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        try:
            key.verify(signature, signing_input, pss, algorithm)
        except InvalidSignature:
            raise SignatureError("JWS signature does not verify with the certificate's key") from None
        return
    raise SignatureError(f"certificate key type {type(key).__name__} is not one Notation signs with")


def _target_digest(payload: bytes) -> str:
    doc = loads_strict(payload, "Notation payload", 64 * 1024)
    target = doc.get("targetArtifact") if isinstance(doc, dict) else None
    digest = target.get("digest") if isinstance(target, dict) else None
    if not isinstance(digest, str):
        raise SignatureError("Notation payload has no targetArtifact.digest")
    return digest


@dataclass(frozen=True)
class _Verified:
    leaf: x509.Certificate
    signing_time: datetime


def _verify(envelope: bytes, subject: Digest, trust: NotationTrust, now: datetime) -> _Verified:
    doc = loads_strict(envelope, "JWS envelope", MAX_ENVELOPE_BYTES)
    if not isinstance(doc, dict):
        raise SignatureError("JWS envelope is not a JSON object")
    fields = set(doc)
    if fields != {"payload", "protected", "header", "signature"}:
        raise SignatureError(
            "JWS envelope must be flattened JSON with payload, protected, header and signature; "
            f"has {sorted(fields)[:8]}"
        )
    protected_text, payload_text = doc["protected"], doc["payload"]
    header = _protected_header(_b64url(protected_text, "protected header"), now)
    payload = _b64url(payload_text, "payload")
    signature = _b64url(doc["signature"], "signature")
    chain = _certificates(doc["header"])
    leaf = chain[0]
    _verify_jws_signature(leaf, header.alg, signature, f"{protected_text}.{payload_text}".encode("ascii"))
    problem = leaf_problem(leaf, now)
    if problem is not None:
        raise SignatureError(problem.replace("at the integrated time", "now"))
    anchors = list(trust.certificates)
    problems: list[str] = []
    path = build_path(
        leaf, candidates=[*anchors, *chain[1:]], anchors=anchors, when=now, path=[leaf], problems=problems
    )
    if path is None:
        raise SignatureError(
            problems[0] if problems else f"certificate does not chain to the trust store ({trust.source})"
        )
    target = _target_digest(payload)
    if target != subject:
        raise SignatureError(f"signature is for {printable(target, 140)}, not {subject}")
    return _Verified(leaf=leaf, signing_time=header.signing_time)


def _check(subject: Digest, source: str, *, verified: bool, reason: str, **extra: Any) -> SignatureCheck:
    return SignatureCheck(
        kind=SignatureKind.NOTATION,
        format=SignatureFormat.NOTATION_REFERRER,
        subject=subject,
        verified=verified,
        reason=reason,
        source=source,
        **extra,
    )


def verify_notation_envelope(
    media_type: str,
    envelope: bytes,
    subject: Digest,
    trust: NotationTrust,
    *,
    now: datetime,
    source: str,
) -> SignatureCheck:
    """Verify one Notation signature envelope of ``subject`` (steps in the module docstring)."""
    if media_type == COSE_MEDIA_TYPE:
        return _check(subject, source, verified=False, reason="COSE Notation envelopes are not supported (JWS only)")
    if media_type != JWS_MEDIA_TYPE:
        return _check(
            subject, source, verified=False, reason=f"envelope media type {printable(media_type, 80)} is not JWS"
        )
    if not trust.configured:
        return _check(subject, source, verified=False, reason="no notation trust store is configured")
    try:
        found = _verify(envelope, subject, trust, now)
    except SignatureError as exc:
        return _check(subject, source, verified=False, reason=str(exc))
    fields: dict[str, Any] = {
        "identity": found.leaf.subject.rfc4514_string(),
        "issuer": found.leaf.issuer.rfc4514_string(),
        "integrated_time": found.signing_time,  # the signer's claim: notary.x509 has no authentic time
    }
    allowed = [identity for identity in trust.identities if identity.accepts(found.leaf.subject)]
    if not allowed:
        wanted = "; ".join(i.text for i in trust.identities[:2]) or "none configured"
        return _check(
            subject,
            source,
            verified=False,
            reason=f"signer {fields['identity']} is not a trusted identity ({wanted})",
            **fields,
        )
    reason = f"signed by {fields['identity']} (issued by {fields['issuer']}), chained to {trust.source}"
    return _check(subject, source, verified=True, reason=reason, **fields)


def notation_trust(certificates: Sequence[x509.Certificate], identities: Sequence[str], source: str) -> NotationTrust:
    """A trust object from loaded certificates and identity texts (ConfigError on a bad identity)."""
    return NotationTrust(tuple(certificates), tuple(parse_identity(text) for text in identities), source)
