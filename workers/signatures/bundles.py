"""Verify Sigstore bundles (cosign v2.6+/v3 referrers) for an image digest with sigstore-python, fully offline.

Two contents are accepted, both keyless (a Fulcio-style leaf certificate in the bundle):

1. a message signature over a cosign simple-signing payload (``hashedrekord`` entry): ``verify_artifact``
   over the payload blob, then the payload must name the image digest and cosign's signature type;
2. a DSSE envelope (``dsse`` entry): ``verify_dsse``, then the payload type must be in-toto and the Statement
   (v1 or v0.1) must have a subject whose digest is the image digest. cosign v3 ``sign`` makes such a
   Statement with predicateType ``https://sigstore.dev/cosign/sign/v1``; any other predicate is an attestation.

Who may sign is an :class:`~workers.signatures.identity.IdentityPolicy` (exact subject or an anchored subject
regexp, issuer, GitHub workflow repository/ref), checked inside sigstore's verification as its
``VerificationPolicy`` (:class:`SigstorePolicy`). Every failure,
expected or not, becomes ``verified=False`` with a reason; nothing here raises to its caller for a bad bundle.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from sigstore.errors import CertValidationError, VerificationError
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootMessage

from workers.domain import Digest
from workers.errors import ConfigError, SignatureError
from workers.signatures.identity import IdentityPolicy, certificate_identity
from workers.signatures.intoto import IN_TOTO_PAYLOAD_TYPE, bind_statement, parse_statement
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind, printable
from workers.signatures.simplesigning import bind_payload
from workers.signatures.trustroot import read_trusted_root

log = logging.getLogger(__name__)

COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MAX_REASON = 400  # sigstore's messages can embed whole certificates; records keep a readable sentence


class SignerMismatch(VerificationError):
    """The certificate verified, but its identity, issuer or workflow is not one the policy allows."""


# ---------------------------------------------------------------------------------------------- policy and root


@dataclass(frozen=True)
class SigstorePolicy:
    """An :class:`IdentityPolicy` as sigstore's ``VerificationPolicy``: checked inside sigstore's verification."""

    policy: IdentityPolicy

    def verify(self, cert: x509.Certificate) -> None:
        """Raise :class:`SignerMismatch` unless ``cert``'s signer is one the policy allows."""
        try:
            found = certificate_identity(cert)
        except SignatureError as exc:  # malformed extensions or disagreeing issuers: the certificate names nobody
            raise SignerMismatch(str(exc)) from None
        mismatch = self.policy.mismatch(found)
        if mismatch is not None:
            raise SignerMismatch(mismatch)


def load_trusted_root(path: Path | None) -> TrustedRoot:
    """sigstore's view of the operator's ``trusted_root.json`` (a private Sigstore), or of the production root.

    Found and read by :func:`trustroot.read_trusted_root`; neither touches the network or the TUF cache.
    ConfigError when the file is missing or not a trusted root.
    """
    data, source = read_trusted_root(path)
    try:
        # What TrustedRoot.from_file does after reading the file, here over bytes read in one place.
        return TrustedRoot(TrustedRootMessage.from_json(data))
    except Exception as exc:  # pydantic validation or sigstore's own media-type refusal
        raise ConfigError(f"{source} is not a Sigstore trusted root: {_short(exc)}") from None


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
        policy: IdentityPolicy,
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

    def _verify_message(self, bundle: Bundle, payload: bytes, subject: Digest, policy: IdentityPolicy) -> _Outcome:
        kind = SignatureKind.COSIGN_KEYLESS
        failure = self._run(lambda: self._verifier.verify_artifact(payload, bundle, SigstorePolicy(policy)))
        if failure:
            return _Outcome(False, failure, kind)
        problem = simple_signing_problem(payload, subject)
        if problem:
            return _Outcome(False, problem, kind)
        return _Outcome(True, f"simple-signing payload signed by {policy.describe()}", kind)

    def _verify_dsse(
        self, bundle: Bundle, document: dict[str, Any], subject: Digest, policy: IdentityPolicy
    ) -> _Outcome:
        kind = _guess(document)
        result: list[tuple[str, bytes]] = []
        failure = self._run(lambda: result.append(self._verifier.verify_dsse(bundle, SigstorePolicy(policy))))
        if failure:
            return _Outcome(False, failure, kind)
        payload_type, payload = result[0]
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            return _Outcome(
                False,
                f"DSSE payload type is {printable(payload_type, 200)}, not {IN_TOTO_PAYLOAD_TYPE}",
                kind,
            )
        try:
            statement = parse_statement(payload)
            bind_statement(statement, subject)
        except SignatureError as exc:
            return _Outcome(False, str(exc), kind)
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
            f"attestation {printable(predicate_type, 200)} signed by {policy.describe()}",
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
            identity, issuer = found.subject, found.issuer
            repository, ref = found.workflow_repository, found.workflow_ref
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
        return f"not a Sigstore bundle (mediaType {printable(media_type, 80)!r})"
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


def _short(exc: BaseException) -> str:
    return printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200)
