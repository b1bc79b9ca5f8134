"""pytest plugin: a private, offline Sigstore instance (CA, CT log, Rekor) that issues certificates and signs for tests.

Everything a real keyless signature carries is made here with our own keys: a Fulcio-like CA issuing short-lived
leaf certificates with the OIDC issuer extensions and an embedded SCT from our CT log, and a Rekor-like log whose
entries come with an inclusion proof, a signed checkpoint and a SET. ``trusted_root.json`` describes the
instance, so sigstore-python (and Tollgate's own legacy verifier) accept what it signs, fully offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"  # what cosign v3 `sign` puts in its statement
SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"

# Legacy cosign layer annotations (the signature key has the older prefix, the rest the newer one).
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_BUNDLE = "dev.sigstore.cosign/bundle"
ANNOTATION_PREDICATE_TYPE = "predicateType"

DEFAULT_IDENTITY = "dev@example.com"
DEFAULT_ISSUER = "https://issuer.example.com"

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw bytes (what sigstore's Identity policy reads)
OID_WORKFLOW_REPOSITORY = ObjectIdentifier("1.3.6.1.4.1.57264.1.5")  # raw bytes, e.g. "org/repo"
OID_WORKFLOW_REF = ObjectIdentifier("1.3.6.1.4.1.57264.1.6")  # raw bytes, e.g. "refs/heads/main"
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier("1.3.6.1.4.1.57264.1.12")  # DER UTF8String
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier("1.3.6.1.4.1.57264.1.14")  # DER UTF8String
OID_EMBEDDED_SCT = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _utf8string(value: str) -> bytes:
    raw = value.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """The log id of RFC 6962 / Rekor: sha256 over the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(_spki(key)).digest()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what a DSSE signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d " % (len(kind), kind, len(payload)) + payload


# ---------------------------------------------------------------------------------------------- payloads


def simple_signing_payload(
    digest: str,
    reference: str = "registry.test/team/app",
    optional: Mapping[str, str] | None = None,
    *,
    signature_type: str = SIMPLE_SIGNING_TYPE,
) -> bytes:
    """The exact bytes cosign signs for an image: the simple-signing JSON naming ``digest``."""
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": signature_type,
        },
        "optional": dict(optional) if optional is not None else None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def in_toto_statement(
    digest: str,
    predicate_type: str = COSIGN_SIGN_PREDICATE,
    predicate: Mapping[str, Any] | None = None,
    *,
    statement_type: str = STATEMENT_V1,
    name: str | None = None,
) -> bytes:
    """An in-toto Statement over the manifest ``digest`` (``sha256:<hex>``); by default cosign v3's sign statement."""
    subject: dict[str, Any] = {"digest": {"sha256": digest.removeprefix("sha256:")}}
    if name is not None:
        subject["name"] = name
    document = {
        "_type": statement_type,
        "subject": [subject],
        "predicateType": predicate_type,
        "predicate": dict(predicate or {}),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def tamper_dsse_payload(bundle: bytes, payload: bytes) -> bytes:
    """``bundle`` with its DSSE payload replaced and the signatures kept (an attacker's edit)."""
    document = json.loads(bundle)
    document["dsseEnvelope"]["payload"] = _b64(payload)
    return json.dumps(document).encode()


# ---------------------------------------------------------------------------------------------- the instance


@dataclass(frozen=True)
class Leaf:
    """A short-lived signing certificate and its private key, as Fulcio would hand out."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    identity: str
    issuer: str

    @property
    def pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        """The certificate in DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 over ``data``, DER-encoded (what cosign produces)."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class LogEntry:
    """One entry of our Rekor: the canonicalised body, where and when it was logged, and the proofs."""

    kind: str
    body: bytes
    log_index: int
    integrated_time: int
    bundle_entry: dict[str, Any]  # the bundle's ``tlogEntries[0]``
    set_bundle: dict[str, Any]  # the legacy ``dev.sigstore.cosign/bundle`` annotation value


@dataclass(frozen=True)
class LegacySignature:
    """A legacy ``.sig`` layer: its blob (the simple-signing payload) and its annotations."""

    payload: bytes
    annotations: dict[str, str]
    media_type: str = SIMPLE_SIGNING_MEDIA_TYPE
    entry: LogEntry | None = None


@dataclass(frozen=True)
class LegacyAttestation:
    """A legacy ``.att`` layer: its blob (a DSSE envelope) and its annotations."""

    envelope: bytes
    annotations: dict[str, str]
    media_type: str = DSSE_MEDIA_TYPE
    entry: LogEntry | None = None


@dataclass
class PrivateSigstore:
    """A private Sigstore: CA, CT log and Rekor keys, with ``trusted_root.json`` written into ``directory``.

    ``name`` keeps two instances apart in messages (a bundle from another instance must not verify).
    """

    directory: Path
    name: str = "tollgate-test"
    created: datetime = field(default_factory=_now)
    ca_key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    ct_key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    rekor_key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    ca_certificate: x509.Certificate = field(init=False, repr=False)
    trusted_root_path: Path = field(init=False)
    _next_index: int = field(default=1000, init=False, repr=False)

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-fulcio"),
            ]
        )
        self.ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.created - timedelta(days=1))
            .not_valid_after(self.created + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),  # certSign, cRLSign
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.trusted_root_path = self.directory / "trusted_root.json"
        self.trusted_root_path.write_text(json.dumps(self.trusted_root(), indent=2))

    # ------------------------------------------------------------------------------------------ trust

    @property
    def ca_pem(self) -> bytes:
        """The root CA certificate in PEM (the legacy ``chain`` annotation)."""
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def rekor_public_key(self) -> ec.EllipticCurvePublicKey:
        """The key that signs checkpoints and SETs."""
        return self.rekor_key.public_key()

    @property
    def rekor_log_id(self) -> str:
        """The Rekor log id (hex), as the legacy SET payload names it."""
        return _key_id(self.rekor_public_key).hex()

    def trusted_root(self) -> dict[str, Any]:
        """The trusted root describing this instance (sigstore's ``trustedroot+json;version=0.1``)."""
        valid_for = {"start": _rfc3339(self.created - timedelta(days=1))}

        def log(url: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "logId": {"keyId": _b64(_key_id(key))},
                "publicKey": {
                    "rawBytes": _b64(_spki(key)),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid_for,
                },
            }

        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log(f"https://rekor.{self.name}.test", self.rekor_public_key)],
            "ctlogs": [log(f"https://ctfe.{self.name}.test", self.ct_key.public_key())],
            "certificateAuthorities": [
                {
                    "subject": {"organization": self.name, "commonName": f"{self.name}-fulcio"},
                    "uri": f"https://fulcio.{self.name}.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca_certificate.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": valid_for,
                }
            ],
            "timestampAuthorities": [],
        }

    # ------------------------------------------------------------------------------------------ certificates

    def issue(
        self,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
        *,
        workflow_repository: str | None = None,
        workflow_ref: str | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        expired: bool = False,
        sct: bool = True,
    ) -> Leaf:
        """A leaf for ``identity`` (email, or URI when it has ``://``) from ``issuer``, with an embedded SCT.

        ``expired=True`` makes a certificate that ran out an hour before now, so anything signed and logged
        now was signed outside its validity. ``workflow_*`` add the GitHub Actions extensions (v1 and v2).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or (_now() - timedelta(minutes=1))
        if expired:
            start = _now() - timedelta(hours=2)
            lifetime = timedelta(minutes=10)
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, _utf8string(issuer)), critical=False)
        )
        if workflow_repository is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_WORKFLOW_REPOSITORY, workflow_repository.encode()), critical=False
            ).add_extension(
                x509.UnrecognizedExtension(
                    OID_SOURCE_REPOSITORY_URI, _utf8string(f"https://github.com/{workflow_repository}")
                ),
                critical=False,
            )
        if workflow_ref is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_WORKFLOW_REF, workflow_ref.encode()), critical=False
            ).add_extension(
                x509.UnrecognizedExtension(OID_SOURCE_REPOSITORY_REF, _utf8string(workflow_ref)), critical=False
            )
        if sct:
            builder = builder.add_extension(self._embedded_sct(builder, start), critical=False)
        certificate = builder.sign(self.ca_key, hashes.SHA384())
        return Leaf(certificate=certificate, key=key, identity=identity, issuer=issuer)

    def _embedded_sct(self, builder: x509.CertificateBuilder, when: datetime) -> x509.UnrecognizedExtension:
        """An RFC 6962 precertificate SCT from our CT log over the certificate as it is without the SCT.

        cryptography's ``tbs_precertificate_bytes`` strips the SCT extension from the final certificate, so
        signing the TBS of the SCT-less build makes the two match.
        """
        tbs = builder.sign(self.ca_key, hashes.SHA384()).tbs_certificate_bytes
        timestamp = int(when.timestamp() * 1000)
        issuer_key_hash = _key_id(self.ca_key.public_key())
        # digitally-signed struct: version 0, signature_type certificate_timestamp, precert_entry (1)
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            bytes([0])
            + _key_id(self.ct_key.public_key())
            + struct.pack("!QH", timestamp, 0)
            + bytes([4, 3])  # sha256, ecdsa
            + struct.pack("!H", len(signature))
            + signature
        )
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        return x509.UnrecognizedExtension(OID_EMBEDDED_SCT, b"\x04" + _der_length(len(sct_list)) + sct_list)

    # ------------------------------------------------------------------------------------------ the log

    def log(self, kind: str, body: Mapping[str, Any], *, integrated_time: datetime | None = None) -> LogEntry:
        """Log ``body`` in our Rekor: a tree of one leaf, a signed checkpoint and a SET.

        Each entry gets its own one-leaf tree (the proof's index is 0), but a log index that grows, so tests
        can tell entries apart by ``log_index`` as they would on the real log.
        """
        canonical = rfc8785.dumps(dict(body))
        log_index = self._next_index
        self._next_index += 1
        integrated = int((integrated_time or _now()).timestamp())
        root = hashlib.sha256(b"\x00" + canonical).digest()  # RFC 6962 leaf hash; one leaf: the root
        log_id = _key_id(self.rekor_public_key)
        origin = f"rekor.{self.name}.test - {log_index}"
        note = f"{origin}\n1\n{_b64(root)}\n"
        note_signature = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 rekor.{self.name}.test {_b64(log_id[:4] + note_signature)}\n"
        set_payload = {
            "body": _b64(canonical),
            "integratedTime": integrated,
            "logID": log_id.hex(),
            "logIndex": log_index,
        }
        set_signature = self.rekor_key.sign(rfc8785.dumps(set_payload), ec.ECDSA(hashes.SHA256()))
        entry = {
            "logIndex": str(log_index),
            "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": kind, "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_signature)},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(canonical),
        }
        legacy = {"SignedEntryTimestamp": _b64(set_signature), "Payload": set_payload}
        return LogEntry(kind, canonical, log_index, integrated, entry, legacy)

    def _hashedrekord(self, leaf: Leaf, payload: bytes, signature: bytes, integrated_time: datetime | None) -> LogEntry:
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(leaf.pem)}},
            },
        }
        return self.log("hashedrekord", body, integrated_time=integrated_time)

    def _dsse(
        self, leaf: Leaf, envelope: Mapping[str, Any], payload: bytes, integrated_time: datetime | None
    ) -> LogEntry:
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": sig["sig"], "verifier": _b64(leaf.pem)} for sig in envelope["signatures"]],
            },
        }
        return self.log("dsse", body, integrated_time=integrated_time)

    # ------------------------------------------------------------------------------------------ bundles

    def _bundle(self, leaf: Leaf, entry: LogEntry, content: Mapping[str, Any]) -> bytes:
        document = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"certificate": {"rawBytes": _b64(leaf.der)}, "tlogEntries": [entry.bundle_entry]},
            **content,
        }
        return json.dumps(document).encode()

    def simple_signing_bundle(
        self, payload: bytes, *, leaf: Leaf | None = None, integrated_time: datetime | None = None
    ) -> bytes:
        """A v0.3 bundle with a hashedrekord entry and a message signature over ``payload`` (cosign v2.6 style)."""
        leaf = leaf or self.issue()
        signature = leaf.sign(payload)
        entry = self._hashedrekord(leaf, payload, signature, integrated_time)
        digest = hashlib.sha256(payload).digest()
        content = {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                "signature": _b64(signature),
            }
        }
        return self._bundle(leaf, entry, content)

    def dsse_bundle(
        self,
        payload: bytes,
        *,
        leaf: Leaf | None = None,
        payload_type: str = IN_TOTO_PAYLOAD_TYPE,
        integrated_time: datetime | None = None,
    ) -> bytes:
        """A v0.3 bundle with a dsse entry and a DSSE envelope over ``payload`` (usually an in-toto Statement)."""
        leaf = leaf or self.issue()
        envelope = self._envelope(leaf, payload, payload_type)
        entry = self._dsse(leaf, envelope, payload, integrated_time)
        return self._bundle(leaf, entry, {"dsseEnvelope": envelope})

    def sign_image_bundle(self, digest: str, *, leaf: Leaf | None = None) -> bytes:
        """What cosign v3 ``sign`` stores for ``digest``: a DSSE bundle of the cosign/sign/v1 Statement."""
        return self.dsse_bundle(in_toto_statement(digest), leaf=leaf)

    def attest_bundle(
        self,
        digest: str,
        predicate_type: str,
        predicate: Mapping[str, Any] | None = None,
        *,
        leaf: Leaf | None = None,
        statement_type: str = STATEMENT_V1,
    ) -> bytes:
        """What cosign ``attest`` stores for ``digest``: a DSSE bundle of a Statement with ``predicate_type``."""
        statement = in_toto_statement(digest, predicate_type, predicate, statement_type=statement_type)
        return self.dsse_bundle(statement, leaf=leaf)

    @staticmethod
    def _envelope(leaf: Leaf, payload: bytes, payload_type: str) -> dict[str, Any]:
        signature = leaf.sign(pae(payload_type, payload))
        return {"payload": _b64(payload), "payloadType": payload_type, "signatures": [{"sig": _b64(signature)}]}

    # ------------------------------------------------------------------------------------------ legacy cosign

    def _legacy_annotations(self, leaf: Leaf, entry: LogEntry, signature: str) -> dict[str, str]:
        """What cosign puts beside a keyless layer: the signature, certificate, chain and Rekor SET bundle."""
        return {
            ANNOTATION_SIGNATURE: signature,
            ANNOTATION_CERTIFICATE: leaf.pem.decode(),
            ANNOTATION_CHAIN: self.ca_pem.decode(),
            ANNOTATION_BUNDLE: json.dumps(entry.set_bundle, separators=(",", ":")),
        }

    def legacy_signature(
        self, payload: bytes, *, leaf: Leaf | None = None, integrated_time: datetime | None = None
    ) -> LegacySignature:
        """A keyless ``.sig`` layer: signature, certificate, chain and the Rekor SET bundle annotations."""
        leaf = leaf or self.issue()
        signature = leaf.sign(payload)
        entry = self._hashedrekord(leaf, payload, signature, integrated_time)
        annotations = self._legacy_annotations(leaf, entry, _b64(signature))
        return LegacySignature(payload=payload, annotations=annotations, entry=entry)

    def legacy_attestation(
        self, statement: bytes, *, leaf: Leaf | None = None, integrated_time: datetime | None = None
    ) -> LegacyAttestation:
        """A keyless ``.att`` layer: a DSSE envelope, an empty signature annotation, certificate, chain, SET.

        The SET covers a ``dsse`` 0.0.1 body (cosign 2.x logs ``intoto`` 0.0.2; a test needing that builds its own).
        """
        leaf = leaf or self.issue()
        envelope = self._envelope(leaf, statement, IN_TOTO_PAYLOAD_TYPE)
        entry = self._dsse(leaf, envelope, statement, integrated_time)
        predicate_type = json.loads(statement).get("predicateType", "")
        annotations = {**self._legacy_annotations(leaf, entry, ""), ANNOTATION_PREDICATE_TYPE: str(predicate_type)}
        return LegacyAttestation(envelope=json.dumps(envelope).encode(), annotations=annotations, entry=entry)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def private_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateSigstore]:
    """The test Sigstore instance every signature test trusts (its ``trusted_root_path`` is the operator's file)."""
    yield PrivateSigstore(tmp_path_factory.mktemp("sigstore"), name="tollgate-test")


@pytest.fixture(scope="session")
def untrusted_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateSigstore]:
    """A second, independent instance: what it signs must not verify against ``private_sigstore``'s root."""
    yield PrivateSigstore(tmp_path_factory.mktemp("sigstore-other"), name="tollgate-other")
