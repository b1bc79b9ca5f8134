"""A test Notation signer: its own root CA and code-signing leaves, JWS envelopes the way notation writes them."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOTATION_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
JWS_MEDIA_TYPE = "application/jose+json"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
LEAF_SUBJECT = {"C": "US", "ST": "WA", "O": "Acme Rockets", "CN": "release-signer"}
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "CN": NameOID.COMMON_NAME,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _name(attributes: Mapping[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[key], value) for key, value in attributes.items()])


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class NotationSigner:
    """A root CA (self-signed) that issues leaves; ``trust_store`` is the PEM an operator would configure."""

    directory: Path
    name: str = "Acme Test Root"
    ca_key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    ca: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        subject = _name({"C": "US", "O": "Acme Rockets", "CN": self.name})
        now = _now()
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.trust_store.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    @property
    def trust_store(self) -> Path:
        """The root CA in PEM (what ``signatures.notation.trust_store`` points at)."""
        return self.directory / f"{self.name.replace(' ', '-').lower()}.pem"

    def leaf(
        self,
        subject: Mapping[str, str] = LEAF_SUBJECT,
        *,
        key: Any = None,
        code_signing: bool = True,
        expired: bool = False,
    ) -> tuple[x509.Certificate, Any]:
        """A leaf certificate (and its key) issued by the root: code signing unless told otherwise."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = _now()
        start, end = (
            (now - timedelta(days=3), now - timedelta(days=2))
            if expired
            else (now - timedelta(hours=1), now + timedelta(days=30))
        )
        usages = [ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        return cert, key

    def envelope(
        self,
        target: Mapping[str, Any],
        *,
        leaf: tuple[x509.Certificate, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        alg: str | None = None,
        chain: list[x509.Certificate] | None = None,
    ) -> bytes:
        """A flattened JWS JSON envelope over ``{"targetArtifact": target}``, ``x5c`` = leaf then the root."""
        cert, key = leaf or self.leaf()
        if alg is None:
            alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "PS256"
        protected = {
            "alg": alg,
            "cty": PAYLOAD_TYPE,
            "crit": ["io.cncf.notary.signingScheme"],
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": _now().isoformat().replace("+00:00", "Z"),
            **(header or {}),
        }
        protected_b64 = _b64url(json.dumps(protected).encode())
        payload_b64 = _b64url(json.dumps({"targetArtifact": dict(target)}).encode())
        signing_input = f"{protected_b64}.{payload_b64}".encode()
        if isinstance(key, ec.EllipticCurvePrivateKey):
            digest = {"ES384": hashes.SHA384(), "ES512": hashes.SHA512()}.get(alg, hashes.SHA256())
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
            size = (key.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            signature = key.sign(
                signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
            )
        x5c = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (chain or [cert, self.ca])
        ]
        document = {
            "payload": payload_b64,
            "protected": protected_b64,
            "header": {"x5c": x5c, "io.cncf.notary.signingAgent": "notation-test/1.0"},
            "signature": _b64url(signature),
        }
        return json.dumps(document).encode()


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key for PS256 leaves (notation maps RSA-2048 to PS256)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)
