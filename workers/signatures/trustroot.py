"""Sigstore trusted roots (Fulcio CAs and Rekor logs with their validity windows), parsed from trusted_root.json.

The JSON is parsed here rather than through ``sigstore.models.TrustedRoot``: that class's public surface
(``get_fulcio_certs``, ``rekor_keyring``) drops each CA's and each log key's ``validFor`` window, and offline
verification of a legacy signature has to ask "was this CA, this log key, valid at the integrated time?".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509

from workers.errors import ConfigError, SignatureError
from workers.signatures.keys import PublicKey, load_der_public_key
from workers.signatures.simplesigning import loads_strict

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
PRODUCTION_TUF_URL = "https://tuf-repo-cdn.sigstore.dev"
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ValidFor:
    """A validity window from the trusted root; an open end means still valid."""

    start: datetime | None
    end: datetime | None

    def contains(self, when: datetime) -> bool:
        """True when ``when`` lies inside the window (ends inclusive)."""
        return (self.start is None or self.start <= when) and (self.end is None or when <= self.end)


@dataclass(frozen=True)
class TransparencyLog:
    """A Rekor log: its id (hex, as the SET bundle's ``logID``), key, URL and key validity."""

    log_id: str
    key: PublicKey
    base_url: str
    valid_for: ValidFor


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA: its chain (issuing certificate first, root last), URL and validity."""

    uri: str
    certificates: tuple[x509.Certificate, ...]
    valid_for: ValidFor


@dataclass(frozen=True)
class TrustRoot:
    """The Fulcio CAs and Rekor logs that keyless verification trusts, and where they were read from."""

    source: str
    tlogs: tuple[TransparencyLog, ...]
    certificate_authorities: tuple[CertificateAuthority, ...]

    def log(self, log_id: str) -> TransparencyLog | None:
        """The log whose id is ``log_id`` (hex, any case), or None."""
        wanted = log_id.lower()
        return next((log for log in self.tlogs if log.log_id == wanted), None)

    def authorities_at(self, when: datetime) -> tuple[CertificateAuthority, ...]:
        """The CAs whose validity window contains ``when``."""
        return tuple(ca for ca in self.certificate_authorities if ca.valid_for.contains(when))


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} is not a timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{where} is not an RFC 3339 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{where} has no time zone: {value[:40]!r}")
    return parsed


def _valid_for(obj: Any, where: str) -> ValidFor:
    if obj is None:
        return ValidFor(None, None)
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}.validFor is not an object")
    return ValidFor(_time(obj.get("start"), f"{where}.validFor.start"), _time(obj.get("end"), f"{where}.validFor.end"))


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not valid base64") from None


def _tlog(obj: Any, where: str) -> TransparencyLog:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where} is not an object")
    public_key = obj.get("publicKey")
    log_id = obj.get("logId")
    if not isinstance(public_key, dict) or not isinstance(log_id, dict):
        raise ConfigError(f"{where} needs publicKey and logId objects")
    key = load_der_public_key(_b64(public_key.get("rawBytes"), f"{where}.publicKey.rawBytes"), where)
    base_url = obj.get("baseUrl", "")
    return TransparencyLog(
        log_id=_b64(log_id.get("keyId"), f"{where}.logId.keyId").hex(),
        key=key,
        base_url=base_url if isinstance(base_url, str) else "",
        valid_for=_valid_for(public_key.get("validFor"), f"{where}.publicKey"),
    )


def _authority(obj: Any, where: str) -> CertificateAuthority:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where} is not an object")
    chain = obj.get("certChain")
    raw_certs = chain.get("certificates") if isinstance(chain, dict) else None
    if not isinstance(raw_certs, list) or not raw_certs:
        raise ConfigError(f"{where}.certChain.certificates is missing or empty")
    certs: list[x509.Certificate] = []
    for index, raw in enumerate(raw_certs):
        cert_where = f"{where}.certChain.certificates[{index}]"
        der = _b64(raw.get("rawBytes") if isinstance(raw, dict) else None, f"{cert_where}.rawBytes")
        try:
            cert = x509.load_der_x509_certificate(der)
            _ = cert.extensions  # parsed lazily: fail at load, not in the middle of a verification
            certs.append(cert)
        except ValueError as exc:
            raise ConfigError(f"{cert_where} is not a DER certificate: {str(exc)[:200]}") from None
    uri = obj.get("uri", "")
    return CertificateAuthority(
        uri=uri if isinstance(uri, str) else "",
        certificates=tuple(certs),
        valid_for=_valid_for(obj.get("validFor"), where),
    )


def parse_trust_root(data: bytes, source: str) -> TrustRoot:
    """Parse a trusted_root.json (media type 0.1); ConfigError naming ``source`` and the field otherwise."""
    try:
        doc = loads_strict(data, source, MAX_TRUSTED_ROOT_BYTES)
    except SignatureError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: not a JSON object")
    if doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
        raise ConfigError(f"{source}: mediaType is {str(doc.get('mediaType'))[:80]!r}, not {TRUSTED_ROOT_MEDIA_TYPE}")
    tlogs = doc.get("tlogs", [])
    cas = doc.get("certificateAuthorities", [])
    if not isinstance(tlogs, list) or not isinstance(cas, list):
        raise ConfigError(f"{source}: tlogs and certificateAuthorities must be lists")
    try:
        root = TrustRoot(
            source=source,
            tlogs=tuple(_tlog(t, f"tlogs[{i}]") for i, t in enumerate(tlogs)),
            certificate_authorities=tuple(_authority(c, f"certificateAuthorities[{i}]") for i, c in enumerate(cas)),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if not root.tlogs or not root.certificate_authorities:
        raise ConfigError(f"{source}: needs at least one Rekor log (tlogs) and one Fulcio CA (certificateAuthorities)")
    return root


def read_trusted_root(path: str | Path | None) -> tuple[bytes, str]:
    """The bytes of a trusted_root.json and where they came from, without parsing them (each verifier has its view).

    ``path`` is an operator-provided file (a private Sigstore instance, or a pinned production root); None is
    Sigstore's production root as embedded in the installed sigstore package (no network, no TUF cache). It is
    as fresh as the pinned sigstore release; a rotated Fulcio or Rekor key needs a newer release or a file.
    """
    if path is not None:
        file = Path(path)
        try:
            return file.read_bytes(), str(file)
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read trusted root: {exc.strerror or exc}") from None
    import sigstore

    # sigstore keeps its embedded TUF targets under _store/<url-quoted repository URL>/.
    resource = resources.files("sigstore._store").joinpath(quote(PRODUCTION_TUF_URL, safe=""), "trusted_root.json")
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the installed sigstore package has no embedded production trusted root ({exc});"
            " configure a trusted root file"
        ) from None
    return data, f"sigstore {sigstore.__version__} embedded production trusted_root.json"


def load_trust_root(path: str | Path) -> TrustRoot:
    """Load an operator-provided trusted_root.json (a private Sigstore instance, or a pinned production root)."""
    return parse_trust_root(*read_trusted_root(path))


def production_trust_root() -> TrustRoot:
    """Sigstore's production trusted root as embedded in the installed sigstore package (see read_trusted_root)."""
    return parse_trust_root(*read_trusted_root(None))
