"""Public keys as cosign uses them: PEM loading with clear errors, key ids, and signature checks per key type."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from workers.errors import ConfigError, SignatureError

SupportedKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# sigstore's default algorithm registry pairs each curve with its own hash (P-256 with SHA-256, the cosign default).
_CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_MIN_RSA_BITS = 2048
MAX_PEM_BYTES = 64 * 1024


@dataclass(frozen=True)
class PublicKey:
    """A verification key: the key, its id (sha256 of the SPKI DER, hex), its algorithm and a display name."""

    key: SupportedKey
    key_id: str
    algorithm: str
    name: str

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is this key's signature over ``data`` as cosign makes them.

        ECDSA: DER signature over the hash of ``data`` (SHA-256 for P-256). RSA: SHA-256 with PKCS#1 v1.5 or
        PSS (any salt length, as Go's verifier with PSSSaltLengthAuto). Ed25519: over ``data`` itself.
        """
        if not signature:
            return False
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                digest = _CURVE_HASHES[self.key.curve.name]()
                self.key.verify(signature, data, ec.ECDSA(digest))
            elif isinstance(self.key, rsa.RSAPublicKey):
                return self._verify_rsa(signature, data)
            else:
                self.key.verify(signature, data)
        except (InvalidSignature, ValueError):
            # ValueError: a signature that is not even DER, or of the wrong length for the key.
            return False
        return True

    def _verify_rsa(self, signature: bytes, data: bytes) -> bool:
        assert isinstance(self.key, rsa.RSAPublicKey)
        schemes: tuple[padding.AsymmetricPadding, ...] = (
            padding.PKCS1v15(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
        )
        for scheme in schemes:
            try:
                self.key.verify(signature, data, scheme, hashes.SHA256())
            except (InvalidSignature, ValueError):
                continue
            return True
        return False

    def spki_der(self) -> bytes:
        """The SubjectPublicKeyInfo DER of the key (what the key id hashes)."""
        return self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_of(key: SupportedKey) -> str:
    """sha256 of the key's SubjectPublicKeyInfo DER, lowercase hex (Rekor's log id and cosign's key fingerprint)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def from_key_object(key: object, name: str | None = None, *, error: type[Exception] = ConfigError) -> PublicKey:
    """Wrap a cryptography public key, refusing types and sizes cosign would not sign with."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASHES:
            raise error(f"unsupported elliptic curve {key.curve.name} (P-256, P-384 or P-521 only)")
        algorithm = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}[key.curve.name]
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise error(f"RSA key of {key.key_size} bits is too small (at least {_MIN_RSA_BITS})")
        algorithm = f"rsa-{key.key_size}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise error(f"unsupported public key type {type(key).__name__} (ECDSA, RSA or Ed25519 only)")
    key_id = key_id_of(key)
    return PublicKey(key=key, key_id=key_id, algorithm=algorithm, name=name or key_id[:16])


def load_public_key(pem: bytes | str, name: str | None = None) -> PublicKey:
    """Load a PEM ``PUBLIC KEY`` (PKIX SubjectPublicKeyInfo) as cosign writes ``cosign.pub``; ConfigError otherwise."""
    data = pem.encode("utf-8") if isinstance(pem, str) else bytes(pem)
    label = name or "public key"
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(f"{label}: PEM is {len(data)} bytes, more than {MAX_PEM_BYTES}")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{label}: this is a private key; configure the public key (cosign.pub)")
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        raise ConfigError(f"{label}: not a PEM public key (expected -----BEGIN PUBLIC KEY-----)")
    try:
        key = serialization.load_pem_public_key(data)
    except UnsupportedAlgorithm as exc:
        raise ConfigError(f"{label}: unsupported key algorithm: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{label}: malformed PEM public key: {str(exc)[:200]}") from None
    return from_key_object(key, name)


def load_public_key_file(path: str | Path, name: str | None = None) -> PublicKey:
    """Load a PEM public key from ``path``; the error names the file."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read public key: {exc.strerror}") from None
    try:
        return load_public_key(data, name or file.name)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def load_der_public_key(der: bytes, name: str | None = None, *, error: type[Exception] = ConfigError) -> PublicKey:
    """Load a DER SubjectPublicKeyInfo (trusted roots carry keys this way)."""
    try:
        key = serialization.load_der_public_key(der)
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise error(f"{name or 'public key'}: malformed DER public key: {str(exc)[:200]}") from None
    return from_key_object(key, name, error=error)


def strict_b64decode(text: str, altchars: bytes | None = None) -> bytes | None:
    """Padded base64 as Go's encodings decode it, or None: Python alone would accept excess padding ("QUJD=")."""
    if len(text) % 4:
        return None
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_base64(value: object, what: str) -> bytes:
    """Standard base64 as cosign writes it (padding required, no stray characters); non-empty.

    Raises SignatureError naming ``what``.
    """
    if not isinstance(value, str):
        raise SignatureError(f"{what} is missing or not a string")
    if not value.strip():
        raise SignatureError(f"{what} is empty")
    # Go's StdEncoding skips CR and LF, so a wrapped value is tolerated; anything else outside the alphabet is not.
    decoded = strict_b64decode(value.replace("\r", "").replace("\n", ""))
    if decoded is None:
        raise SignatureError(f"{what} is not valid base64")
    if not decoded:
        raise SignatureError(f"{what} is empty")
    return decoded
