"""Verify Sigstore bundles (cosign v2.6+/v3 referrers) for an image digest with sigstore-python, fully offline.

Two contents are accepted, both keyless (a Fulcio-style leaf certificate in the bundle):

1. a message signature over a cosign simple-signing payload (``hashedrekord`` entry): ``verify_artifact``
   over the payload blob, then the payload must name the image digest and cosign's signature type;
2. a DSSE envelope (``dsse`` entry): ``verify_dsse``, then the payload type must be in-toto and the Statement
   (v1 or v0.1) must have a subject whose digest is the image digest. cosign v3 ``sign`` makes such a
   Statement with predicateType ``https://sigstore.dev/cosign/sign/v1``; any other predicate is an attestation.

Who may sign is a :class:`SignerPolicy` (exact identity or an anchored identity regexp, issuer, GitHub
workflow repository/ref), checked inside sigstore's verification as its ``VerificationPolicy``. Every failure,
expected or not, becomes ``verified=False`` with a reason; nothing here raises to its caller for a bad bundle.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier
from sigstore.errors import CertValidationError, VerificationError
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier

from workers.domain import Digest
from workers.errors import ConfigError, SignatureError
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.signatures.simplesigning import bind_payload

log = logging.getLogger(__name__)

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MAX_REASON = 400  # sigstore's messages can embed whole certificates; records keep a readable sentence

# Fulcio's certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md).
_OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string
_OID_WORKFLOW_REPOSITORY = ObjectIdentifier("1.3.6.1.4.1.57264.1.5")  # raw string, deprecated by .12
_OID_WORKFLOW_REF = ObjectIdentifier("1.3.6.1.4.1.57264.1.6")  # raw string, deprecated by .14
_OID_OTHERNAME_SAN = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
_OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
_OID_SOURCE_REPOSITORY_URI = ObjectIdentifier("1.3.6.1.4.1.57264.1.12")  # DER UTF8String
_OID_SOURCE_REPOSITORY_REF = ObjectIdentifier("1.3.6.1.4.1.57264.1.14")  # DER UTF8String
_GITHUB_PREFIX = "https://github.com/"

# The production trusted root that ships inside sigstore (the TUF bootstrap copy). Reading it directly keeps
# verification offline without the TUF cache directory that Verifier.production(offline=True) writes to.
_EMBEDDED_PRODUCTION_ROOT = ("_store", "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev", "trusted_root.json")


class SignerMismatch(VerificationError):
    """The certificate verified, but its identity, issuer or workflow is not one the policy allows."""


# ---------------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class CertificateIdentity:
    """What a keyless signing certificate says about its signer (unverified until the chain is)."""

    sans: tuple[str, ...]
    issuer: str | None
    workflow_repository: str | None
    workflow_ref: str | None
    issuer_conflict: bool = False  # the v1 and v2 issuer extensions disagree


def _extension_value(cert: x509.Certificate, oid: ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _der_utf8(raw: bytes) -> str | None:
    """A DER UTF8String (tag 0x0C) as text; None when ``raw`` is not exactly one."""
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(raw) < 2 + count:
            return None
        length, offset = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    if offset + length != len(raw):
        return None
    try:
        return raw[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def certificate_identity(cert: x509.Certificate) -> CertificateIdentity:
    """The SANs (email, URI, Sigstore otherName), OIDC issuer and GitHub workflow fields of ``cert``.

    The issuer is read from the v2 extension (DER) and the v1 one (raw); Fulcio writes both, and when both
    are present they must agree, or the certificate is treated as naming no usable issuer.
    """
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        sans.extend(san.get_values_for_type(x509.RFC822Name))
        sans.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == _OID_OTHERNAME_SAN:
                text = _der_utf8(other.value) or _raw_text(other.value)
                if text:
                    sans.append(text)
    issuer_v1 = _raw_text(_extension_value(cert, _OID_ISSUER_V1))
    raw_v2 = _extension_value(cert, _OID_ISSUER_V2)
    issuer_v2 = _der_utf8(raw_v2) if raw_v2 is not None else None
    conflict = issuer_v1 is not None and issuer_v2 is not None and issuer_v1 != issuer_v2
    repository = _raw_text(_extension_value(cert, _OID_WORKFLOW_REPOSITORY))
    if repository is None:
        raw_uri = _extension_value(cert, _OID_SOURCE_REPOSITORY_URI)
        uri = _der_utf8(raw_uri) if raw_uri is not None else None
        if uri and uri.startswith(_GITHUB_PREFIX):
            repository = uri.removeprefix(_GITHUB_PREFIX)
    ref = _raw_text(_extension_value(cert, _OID_WORKFLOW_REF))
    if ref is None:
        raw_ref = _extension_value(cert, _OID_SOURCE_REPOSITORY_REF)
        ref = _der_utf8(raw_ref) if raw_ref is not None else None
    return CertificateIdentity(
        sans=tuple(sans),
        issuer=None if conflict else (issuer_v2 or issuer_v1),
        workflow_repository=repository,
        workflow_ref=ref,
        issuer_conflict=conflict,
    )


@dataclass(frozen=True)
class SignerPolicy:
    """Who may sign: an issuer and an exact identity or an identity regexp, optionally a GitHub workflow.

    The regexp must match a whole SAN (``re.fullmatch``): cosign's ``--certificate-identity-regexp`` searches
    unanchored, which lets ``https://github.com/org/`` match ``https://github.com/org/../evil``-style names
    and other repositories that merely contain the pattern; write ``.*`` where a prefix or suffix may vary.
    It is also sigstore's ``VerificationPolicy``: :meth:`verify` runs inside sigstore's verification.
    """

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None
    workflow_repository: str | None = None
    workflow_ref: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("signer policy needs an issuer")
        if (self.identity is None) == (self.identity_regexp is None):
            raise ConfigError("signer policy needs exactly one of identity and identity_regexp")
        if self.identity is not None and not self.identity:
            raise ConfigError("signer policy identity is empty")
        if self.identity_regexp is not None:
            if not self.identity_regexp:
                raise ConfigError("signer policy identity_regexp is empty")
            try:
                re.compile(self.identity_regexp)
            except re.error as exc:
                raise ConfigError(f"signer policy identity_regexp does not compile: {exc}") from None
        for name in ("workflow_repository", "workflow_ref"):
            value = getattr(self, name)
            if value is not None and not value:
                raise ConfigError(f"signer policy {name} is empty")

    def describe(self) -> str:
        """The policy in one line, for reasons."""
        who = self.identity if self.identity is not None else f"/{self.identity_regexp}/"
        parts = [f"{who} from {self.issuer}"]
        if self.workflow_repository:
            parts.append(f"repository {self.workflow_repository}")
        if self.workflow_ref:
            parts.append(f"ref {self.workflow_ref}")
        return ", ".join(parts)

    def identity_matches(self, sans: tuple[str, ...]) -> bool:
        """True when one of ``sans`` is the identity, or wholly matches the regexp."""
        if self.identity is not None:
            return self.identity in sans
        pattern = re.compile(self.identity_regexp or "")
        return any(pattern.fullmatch(san) for san in sans)

    def verify(self, cert: x509.Certificate) -> None:
        """Raise :class:`SignerMismatch` unless ``cert``'s signer is allowed (sigstore's policy protocol)."""
        found = certificate_identity(cert)
        if found.issuer_conflict:
            raise SignerMismatch("certificate's v1 and v2 OIDC issuer extensions disagree")
        if found.issuer is None:
            raise SignerMismatch("certificate names no OIDC issuer")
        if found.issuer != self.issuer:
            raise SignerMismatch(f"issuer is {found.issuer}, policy requires {self.issuer}")
        if not self.identity_matches(found.sans):
            shown = ", ".join(found.sans) or "none"
            wanted = self.identity if self.identity is not None else f"a match of /{self.identity_regexp}/"
            raise SignerMismatch(f"identity is {shown}, policy requires {wanted}")
        if self.workflow_repository is not None and found.workflow_repository != self.workflow_repository:
            raise SignerMismatch(
                f"workflow repository is {found.workflow_repository or 'absent'}, "
                f"policy requires {self.workflow_repository}"
            )
        if self.workflow_ref is not None and found.workflow_ref != self.workflow_ref:
            raise SignerMismatch(
                f"workflow ref is {found.workflow_ref or 'absent'}, policy requires {self.workflow_ref}"
            )


# ---------------------------------------------------------------------------------------------- trust roots


def load_trusted_root(path: Path | None) -> TrustedRoot:
    """The operator's ``trusted_root.json`` (a private Sigstore), or the production root shipped with sigstore.

    Neither touches the network or the TUF cache. ConfigError when the file is missing or not a trusted root.
    """
    if path is None:
        embedded = resources.files("sigstore").joinpath(*_EMBEDDED_PRODUCTION_ROOT)
        try:
            with resources.as_file(embedded) as located:
                return TrustedRoot.from_file(str(located))
        except FileNotFoundError:
            raise ConfigError(
                "the installed sigstore ships no embedded production trusted_root.json; configure a trusted root file"
            ) from None
        except Exception as exc:
            raise ConfigError(f"the embedded production trusted root does not load: {_short(exc)}") from None
    try:
        return TrustedRoot.from_file(str(path))
    except OSError as exc:
        raise ConfigError(f"trusted root {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # pydantic validation or sigstore's own media-type refusal
        raise ConfigError(f"trusted root {path} is not a Sigstore trusted root: {_short(exc)}") from None


# ---------------------------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class _Outcome:
    verified: bool
    reason: str
    kind: SignatureKind
    predicate_type: str | None = None
    statement: dict[str, Any] | None = None


class BundleVerifier:
    """Verifies Sigstore bundles against one trusted root, offline."""

    def __init__(self, trusted_root: TrustedRoot, *, name: str = "trusted root") -> None:
        try:
            self._verifier = Verifier(trusted_root=trusted_root)
        except Exception as exc:
            raise ConfigError(f"{name} cannot verify bundles: {_short(exc)}") from None
        self.name = name

    @classmethod
    def from_trusted_root(cls, path: Path | None) -> BundleVerifier:
        """For ``path`` (a private instance's ``trusted_root.json``), or the embedded production root when None."""
        return cls(load_trusted_root(path), name=str(path) if path else "the Sigstore production root")

    def verify(
        self,
        bundle: bytes,
        subject: Digest,
        policy: SignerPolicy,
        *,
        source: str,
        payload: bytes | None = None,
        format: SignatureFormat = SignatureFormat.BUNDLE_REFERRER,
    ) -> SignatureCheck:
        """Verify ``bundle`` as a signature or attestation of ``subject`` by a signer ``policy`` allows.

        ``payload`` is the signed blob for a message-signature bundle (the simple-signing payload); DSSE
        bundles carry their own. The result is never an exception: a failure is ``verified=False``.
        """
        document = _bundle_document(bundle)
        if isinstance(document, str):
            return self._check(format, subject, source, _Outcome(False, document, SignatureKind.COSIGN_KEYLESS))
        try:
            parsed = Bundle.from_json(bundle)
        except InvalidBundle as exc:
            return self._check(
                format, subject, source, _Outcome(False, f"bundle is invalid: {_short(exc)}", _guess(document))
            )
        except Exception as exc:  # pydantic ValidationError and anything else sigstore's parser may raise
            return self._check(
                format, subject, source, _Outcome(False, f"bundle does not parse: {_short(exc)}", _guess(document))
            )
        if "dsseEnvelope" in document:
            outcome = self._verify_dsse(parsed, document, subject, policy)
        elif payload is None:
            missing = "message-signature bundle without its signed payload"
            outcome = _Outcome(False, missing, SignatureKind.COSIGN_KEYLESS)
        else:
            outcome = self._verify_message(parsed, payload, subject, policy)
        return self._check(
            format, subject, source, outcome, bundle=parsed if outcome.verified else None, document=document
        )

    def _verify_message(self, bundle: Bundle, payload: bytes, subject: Digest, policy: SignerPolicy) -> _Outcome:
        kind = SignatureKind.COSIGN_KEYLESS
        failure = self._run(lambda: self._verifier.verify_artifact(payload, bundle, policy))
        if failure:
            return _Outcome(False, failure, kind)
        problem = simple_signing_problem(payload, subject)
        if problem:
            return _Outcome(False, problem, kind)
        return _Outcome(True, f"simple-signing payload signed by {policy.describe()}", kind)

    def _verify_dsse(self, bundle: Bundle, document: dict[str, Any], subject: Digest, policy: SignerPolicy) -> _Outcome:
        kind = _guess(document)
        result: list[tuple[str, bytes]] = []
        failure = self._run(lambda: result.append(self._verifier.verify_dsse(bundle, policy)))
        if failure:
            return _Outcome(False, failure, kind)
        payload_type, payload = result[0]
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            return _Outcome(
                False,
                f"DSSE payload type is {_printable(payload_type)}, not {IN_TOTO_PAYLOAD_TYPE}",
                kind,
            )
        statement, problem = parse_statement(payload, subject)
        if statement is None:
            return _Outcome(False, problem, kind)
        predicate_type = statement["predicateType"]
        if predicate_type == COSIGN_SIGN_PREDICATE:
            return _Outcome(
                True,
                f"cosign signature statement signed by {policy.describe()}",
                SignatureKind.COSIGN_KEYLESS,
                predicate_type,
            )
        return _Outcome(
            True,
            f"attestation {_printable(predicate_type)} signed by {policy.describe()}",
            SignatureKind.ATTESTATION_KEYLESS,
            predicate_type,
            statement,
        )

    @staticmethod
    def _run(step: Callable[[], object]) -> str | None:
        """Run one sigstore verification; None when it passed, else the reason (every exception is a failure)."""
        try:
            step()
        except SignerMismatch as exc:
            return f"signer not allowed: {_short(exc)}"
        except CertValidationError as exc:
            return f"certificate does not chain to the trusted root at signing time: {_short(exc)}"
        except VerificationError as exc:
            return f"verification failed: {_short(exc)}"
        except InvalidBundle as exc:
            return f"bundle is invalid: {_short(exc)}"
        except SigstoreError as exc:
            return f"sigstore error: {_short(exc)}"
        except Exception as exc:  # e.g. ExtensionNotFound for a certificate without KeyUsage: never a pass
            log.info("bundle verification raised %s", type(exc).__name__, exc_info=True)
            return f"verification failed ({type(exc).__name__}): {_short(exc)}"
        return None

    def _check(
        self,
        format: SignatureFormat,
        subject: Digest,
        source: str,
        outcome: _Outcome,
        *,
        bundle: Bundle | None = None,
        document: dict[str, Any] | None = None,
    ) -> SignatureCheck:
        """The record; signer and log fields only for a verified bundle (a rejected one proves nothing)."""
        identity = issuer = repository = ref = None
        log_index: int | None = None
        integrated: datetime | None = None
        if bundle is not None and outcome.verified:
            found = certificate_identity(bundle.signing_certificate)
            identity = found.sans[0] if found.sans else None
            issuer, repository, ref = found.issuer, found.workflow_repository, found.workflow_ref
            log_index, integrated = _log_fields(document or {})
        return SignatureCheck(
            kind=outcome.kind,
            format=format,
            subject=subject,
            verified=outcome.verified,
            reason=outcome.reason[:MAX_REASON],
            source=source,
            identity=identity,
            issuer=issuer,
            log_index=log_index,
            integrated_time=integrated,
            workflow_repository=repository,
            workflow_ref=ref,
            predicate_type=outcome.predicate_type,
            statement=outcome.statement,
        )


# ---------------------------------------------------------------------------------------------- payloads


def simple_signing_problem(payload: bytes, subject: Digest) -> str | None:
    """Why a (signature-verified) simple-signing payload does not bind to ``subject``; None when it does.

    The same strict parser as the legacy ``.sig`` verifiers (keys folded as Go does, duplicates refused).
    """
    try:
        bind_payload(payload, subject)
    except SignatureError as exc:
        message = str(exc)
        return f"{message}, not {subject}" if message.startswith("payload is for ") else message
    return None


def parse_statement(payload: bytes, subject: Digest) -> tuple[dict[str, Any] | None, str]:
    """An in-toto Statement (v1 or v0.1) whose subjects include ``subject``; else None and the reason."""
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, "in-toto statement is not JSON"
    if not isinstance(statement, dict):
        return None, "in-toto statement is not a JSON object"
    statement_type = statement.get("_type")
    if statement_type not in STATEMENT_TYPES:
        return None, f"unknown in-toto statement type {_printable(str(statement_type), 80)!r}"
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        return None, "in-toto statement has no predicateType"
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return None, "in-toto statement has no subject"
    algorithm, _, hex_value = subject.partition(":")
    named: list[str] = []
    for entry in subjects:
        digests = entry.get("digest") if isinstance(entry, dict) else None
        value = digests.get(algorithm) if isinstance(digests, dict) else None
        if isinstance(value, str):
            if value.lower() == hex_value:
                return statement, ""
            named.append(f"{algorithm}:{value}")
    if not named:
        return None, f"in-toto statement has no {algorithm} subject digest"
    return None, f"statement subject is {_printable(', '.join(named), 160)}, not {subject}"


# ---------------------------------------------------------------------------------------------- helpers


def _bundle_document(raw: bytes) -> dict[str, Any] | str:
    """The bundle's JSON object, or why it is not one (checked before sigstore parses it)."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "bundle is not JSON"
    if not isinstance(document, dict):
        return "bundle is not a JSON object"
    media_type = document.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith("application/vnd.dev.sigstore.bundle"):
        return f"not a Sigstore bundle (mediaType {_printable(str(media_type), 80)!r})"
    return document


def _guess(document: dict[str, Any]) -> SignatureKind:
    """The kind for the record of a bundle that did not verify, from its unverified content (never trusted)."""
    envelope = document.get("dsseEnvelope")
    if envelope is None:
        return SignatureKind.COSIGN_KEYLESS
    try:
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        predicate_type = statement["predicateType"]
    except Exception:  # anything malformed is simply not a cosign signature statement
        return SignatureKind.ATTESTATION_KEYLESS
    return (
        SignatureKind.COSIGN_KEYLESS if predicate_type == COSIGN_SIGN_PREDICATE else SignatureKind.ATTESTATION_KEYLESS
    )


def _log_fields(document: dict[str, Any]) -> tuple[int | None, datetime | None]:
    """Log index and integrated time of the (verified: SET and inclusion proof) tlog entry."""
    material = document.get("verificationMaterial")
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else {}
    log_index: int | None = None
    integrated: datetime | None = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        log_index = int(entry["logIndex"])
    try:
        seconds = int(entry["integratedTime"])
        if seconds > 0:
            integrated = datetime.fromtimestamp(seconds, UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        pass
    return log_index, integrated


def _printable(text: str, limit: int = 200) -> str:
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _short(exc: BaseException) -> str:
    return _printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
