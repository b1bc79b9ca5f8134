"""Tollgate's own ECDSA P-256 signing key: loaded from its PEM file, or generated there (0600) on first use."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from workers.errors import ConfigError
from workers.signatures.keys import PublicKey, from_key_object

MAX_KEY_BYTES = 64 * 1024


@dataclass(frozen=True, repr=False)
class SigningKey:
    """The private key, its public half (as the verifiers load it) and the public PEM served at /api/v1/keys."""

    private: ec.EllipticCurvePrivateKey
    public: PublicKey
    public_pem: bytes
    path: Path

    def __repr__(self) -> str:
        # Never let the private key reach a log line or a traceback.
        return f"SigningKey(key_id={self.key_id!r}, path={str(self.path)!r})"

    @property
    def key_id(self) -> str:
        """sha256 of the public key's SubjectPublicKeyInfo DER, hex (cosign's key fingerprint)."""
        return self.public.key_id

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 over SHA-256, DER: what cosign and every DSSE verifier expect of such a key."""
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))


def _public(private: ec.EllipticCurvePrivateKey, path: Path) -> SigningKey:
    public_key = private.public_key()
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SigningKey(private, from_key_object(public_key, "tollgate"), pem, path)


def load_signing_key(path: Path) -> SigningKey:
    """Read the PEM private key at ``path`` (PKCS#8 or SEC1, unencrypted); ConfigError saying why not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"signing key {path}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_KEY_BYTES:
        raise ConfigError(f"signing key {path}: larger than {MAX_KEY_BYTES} bytes, not a key")
    try:
        private = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing key {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ConfigError(f"signing key {path}: must be an ECDSA P-256 key")
    return _public(private, path)


def load_or_create_signing_key(path: Path) -> SigningKey:
    """The key at ``path``; when there is none, a new P-256 key is written there first, readable only by us.

    Creation is atomic and never overwrites: the key is written to a private temporary file in the same
    directory and hard-linked into place, so a web process and a worker starting together end up with the
    same key (the loser of the race reads the winner's), and nobody ever reads a half-written file.
    """
    if path.exists():
        return load_signing_key(path)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file with mode 0600.
        handle, temporary = tempfile.mkstemp(prefix=".signing-key-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made one first: use that
                os.link(temporary, path)
        finally:
            Path(temporary).unlink()
    except OSError as exc:
        raise ConfigError(f"signing key {path}: cannot create it: {exc.strerror or exc}") from None
    return load_signing_key(path)
