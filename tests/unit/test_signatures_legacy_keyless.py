"""Legacy keyless cosign checks offline: a real GitHub workflow signature, tampered variants, a test CA and log."""

from __future__ import annotations

import base64
import hashlib
import json
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

from workers.domain import Descriptor, parse_digest, sha256_digest
from workers.errors import ConfigError
from workers.signatures.identity import IdentityPolicy, certificate_identity, der_utf8_string
from workers.signatures.keyed import BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION
from workers.signatures.legacy_keyless import (
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    verify_keyless_layer,
    verify_keyless_signature,
)
from workers.signatures.model import SignatureKind
from workers.signatures.simplesigning import SIMPLE_SIGNING_MEDIA_TYPE
from workers.signatures.trustroot import TrustRoot, load_trust_root, parse_trust_root, production_trust_root

FIXTURE = Path("/work/shared/fixtures/cosign-real/github-workflow-keyless")
REAL_SUBJECT = parse_digest("sha256:120ef883bd7612aee0a100297def41014bf3e1aa321a0eaf4d0ebd9855d39a11")
REAL_IDENTITY = (
    "https://github.com/salrashid123/go-bazel-github-workflow/.github/workflows/release.yaml@refs/tags/v0.0.26"
)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = sha256_digest(b"an image manifest")


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return production_trust_root()


def real_layer() -> tuple[Descriptor, bytes]:
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    raw = manifest["layers"][0]
    layer = Descriptor(raw["mediaType"], parse_digest(raw["digest"]), raw["size"], annotations=raw["annotations"])
    return layer, (FIXTURE / "payload.json").read_bytes()


def flip(text: str, index: int = 10) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


# --- the real signature against the production trusted root shipped in sigstore ------------------------------


def test_production_trust_root_is_the_embedded_one(production: TrustRoot) -> None:
    assert "embedded production trusted_root.json" in production.source
    assert production.log("C0D23D6AD406973F9559F3BA2D1CA01F84147D8FFC5B8445C224F98B9591801D") is not None
    assert len(production.certificate_authorities) >= 2


def test_real_keyless_signature_verifies_offline(production: TrustRoot) -> None:
    layer, payload = real_layer()
    policy = IdentityPolicy(issuer=GITHUB_ISSUER, subject=REAL_IDENTITY)
    check = verify_keyless_layer(layer, payload, REAL_SUBJECT, production, policy=policy, source="s:sha256-120e.sig")
    assert check.verified, check.reason
    assert check.kind is SignatureKind.COSIGN_KEYLESS
    assert check.identity == REAL_IDENTITY
    assert check.issuer == GITHUB_ISSUER
    assert check.workflow_repository == "salrashid123/go-bazel-github-workflow"
    assert check.workflow_ref == "refs/tags/v0.0.26"
    assert check.log_index == 956940422
    assert check.integrated_time == datetime.fromtimestamp(1771336509, tz=UTC)
    assert check.reason == f"signed by {REAL_IDENTITY} (issuer {GITHUB_ISSUER}), logged at index 956940422"


def test_real_signature_verifies_without_the_chain_annotation(production: TrustRoot) -> None:
    # The trusted root alone supplies the intermediate; the annotation is only a hint.
    layer, payload = real_layer()
    notes = {k: v for k, v in layer.annotations.items() if k != CHAIN_ANNOTATION}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert check.verified, check.reason


def test_real_signature_from_an_operator_trusted_root_file(tmp_path: Path) -> None:
    import sigstore

    store = Path(sigstore.__file__).parent / "_store"
    embedded = store / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
    pinned = tmp_path / "trusted_root.json"
    pinned.write_bytes(embedded.read_bytes())
    layer, payload = real_layer()
    check = verify_keyless_layer(layer, payload, REAL_SUBJECT, load_trust_root(pinned), policy=None, source="s")
    assert check.verified, check.reason


def test_real_tampered_payload_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    tampered = payload.replace(b"null", b"{}")
    check = verify_keyless_signature(tampered, layer.annotations, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason == "signature does not verify with the certificate's key"
    check = verify_keyless_layer(layer, tampered, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason.startswith("layer blob does not match its digest")


def test_real_flipped_signature_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    notes = {**layer.annotations, SIGNATURE_ANNOTATION: flip(layer.annotations[SIGNATURE_ANNOTATION], 20)}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason == "signature does not verify with the certificate's key"


def test_real_flipped_set_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["SignedEntryTimestamp"] = flip(bundle["SignedEntryTimestamp"], 20)
    notes = {**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason == "SET does not verify with the key of log https://rekor.sigstore.dev"
    assert check.identity is None


def test_real_set_with_changed_integrated_time_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 60
    notes = {**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason.startswith("SET does not verify")


def test_real_swapped_certificate_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    instance = FakeSigstore()
    other_leaf = instance.leaf(instance.now).public_bytes(serialization.Encoding.PEM).decode()
    notes = {**layer.annotations, CERTIFICATE_ANNOTATION: other_leaf}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason == "signature does not verify with the certificate's key"


def test_real_signature_for_another_digest_fails(production: TrustRoot) -> None:
    layer, payload = real_layer()
    check = verify_keyless_layer(layer, payload, SUBJECT, production, policy=None, source="s")
    assert not check.verified and check.reason == f"payload is for {REAL_SUBJECT}"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        (BUNDLE_ANNOTATION, "", "no Rekor bundle"),
        (BUNDLE_ANNOTATION, "{", "Rekor bundle is not valid JSON"),
        (BUNDLE_ANNOTATION, '{"Payload":{}}', "logID"),
        (CERTIFICATE_ANNOTATION, "", "is missing or empty"),
        (CERTIFICATE_ANNOTATION, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not PEM"),
        (CHAIN_ANNOTATION, "garbage", "not PEM certificates"),
        (SIGNATURE_ANNOTATION, "", "is empty"),
    ],
)
def test_real_signature_with_broken_annotations_fails(
    production: TrustRoot, name: str, value: str, reason: str
) -> None:
    layer, payload = real_layer()
    notes = {**layer.annotations, name: value}
    check = verify_keyless_signature(payload, notes, REAL_SUBJECT, production, policy=None, source="s")
    assert not check.verified and reason in check.reason


# --- identity policy on the real certificate -------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        IdentityPolicy(issuer=GITHUB_ISSUER, subject=REAL_IDENTITY),
        IdentityPolicy(
            issuer=GITHUB_ISSUER,
            subject_regexp=r"https://github\.com/salrashid123/go-bazel-github-workflow/\.github/workflows/.*",
            workflow_repository="salrashid123/go-bazel-github-workflow",
            workflow_ref="refs/tags/v0.0.26",
        ),
    ],
)
def test_identity_policy_matches(production: TrustRoot, policy: IdentityPolicy) -> None:
    layer, payload = real_layer()
    assert verify_keyless_layer(layer, payload, REAL_SUBJECT, production, policy=policy, source="s").verified


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            IdentityPolicy(issuer=GITHUB_ISSUER, subject="https://github.com/someone/else/.github/workflows/x.yaml"),
            "does not match subject https://github.com/someone/else",
        ),
        (
            # Full match: a prefix of the identity is not enough.
            IdentityPolicy(issuer=GITHUB_ISSUER, subject_regexp=r"https://github\.com/salrashid123/go-bazel"),
            "does not match subject regexp",
        ),
        (
            IdentityPolicy(issuer="https://accounts.google.com", subject=REAL_IDENTITY),
            "does not match issuer https://accounts.google.com (certificate issuer " + GITHUB_ISSUER + ")",
        ),
        (
            IdentityPolicy(issuer=GITHUB_ISSUER, subject=REAL_IDENTITY, workflow_repository="salrashid123/other"),
            "does not match workflow repository salrashid123/other",
        ),
        (
            IdentityPolicy(issuer=GITHUB_ISSUER, subject=REAL_IDENTITY, workflow_ref="refs/heads/main"),
            "does not match workflow ref refs/heads/main (certificate has refs/tags/v0.0.26)",
        ),
    ],
)
def test_identity_policy_mismatch(production: TrustRoot, policy: IdentityPolicy, reason: str) -> None:
    layer, payload = real_layer()
    check = verify_keyless_layer(layer, payload, REAL_SUBJECT, production, policy=policy, source="s")
    assert not check.verified
    assert check.reason.startswith(f"identity {REAL_IDENTITY} does not match")
    assert reason in check.reason
    # The record still says who did sign, for the operator reading why it was refused.
    assert check.identity == REAL_IDENTITY and check.log_index == 956940422


def test_identity_policy_refuses_to_accept_anyone() -> None:
    with pytest.raises(ConfigError, match="needs a subject"):
        IdentityPolicy(issuer=GITHUB_ISSUER)
    with pytest.raises(ConfigError, match="needs an issuer"):
        IdentityPolicy(issuer="", subject="x")
    with pytest.raises(ConfigError, match="is invalid"):
        IdentityPolicy(issuer=GITHUB_ISSUER, subject_regexp="(")


# --- a test Sigstore instance: CA, intermediate, leaf and a Rekor key made here --------------------------------

FULCIO = "1.3.6.1.4.1.57264.1."


def _utf8(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128
    return bytes([0x0C, len(data)]) + data


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tollgate.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class FakeSigstore:
    """A root CA, an intermediate, a Rekor log key and a trusted root listing them (and nothing else)."""

    now: datetime = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    mid_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    rekor_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    signer_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        start, end = self.now - timedelta(days=365), self.now + timedelta(days=3650)
        self.root = self._ca(_name("test-root"), self.root_key, self.root_key, _name("test-root"), start, end, None)
        self.intermediate = self._ca(_name("test-intermediate"), self.mid_key, self.root_key, _name("test-root"),
                                     start, end, 0)

    @staticmethod
    def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey,
            issuer: x509.Name, start: datetime, end: datetime, path_length: int | None) -> x509.Certificate:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(issuer_key, hashes.SHA384())
        )

    def leaf(
        self,
        start: datetime,
        *,
        minutes: int = 10,
        san: x509.GeneralName | None = None,
        issuer_ext: str | None = "https://issuer.test",
        issuer_v2: str | None = "https://issuer.test",
        extra: dict[str, bytes] | None = None,
        eku: ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
        issuer_cert: x509.Certificate | None = None,
        issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> x509.Certificate:
        issuing = issuer_cert or self.intermediate
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(issuing.subject)
            .public_key(self.signer_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(minutes=minutes))
            .add_extension(x509.SubjectAlternativeName([san or x509.RFC822Name("dev@tollgate.test")]), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        )
        if issuer_ext is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(FULCIO + "1"), issuer_ext.encode()), critical=False
            )
        if issuer_v2 is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(FULCIO + "8"), _utf8(issuer_v2)), critical=False
            )
        for oid, value in (extra or {}).items():
            builder = builder.add_extension(x509.UnrecognizedExtension(ObjectIdentifier(oid), value), critical=False)
        return builder.sign(issuer_key or self.mid_key, hashes.SHA256())

    def trust_root(self, *, ca_end: datetime | None = None, rekor_key: ec.EllipticCurvePrivateKey | None = None,
                   with_intermediate: bool = True) -> TrustRoot:
        spki = (rekor_key or self.rekor_key).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        chain = [self.intermediate, self.root] if with_intermediate else [self.root]
        valid_for: dict[str, str] = {"start": "2020-01-01T00:00:00Z"}
        if ca_end is not None:
            valid_for["end"] = ca_end.isoformat().replace("+00:00", "Z")
        doc = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.tollgate.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": _b64(hashlib.sha256(spki).digest())},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "tollgate.test", "commonName": "test-root"},
                "uri": "https://fulcio.tollgate.test",
                "certChain": {"certificates": [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                                               for c in chain]},
                "validFor": valid_for,
            }],
            "ctlogs": [],
            "timestampAuthorities": [],
        }
        return parse_trust_root(json.dumps(doc).encode(), "test trusted root")

    def sign(
        self,
        payload: bytes,
        leaf: x509.Certificate,
        *,
        integrated: datetime | None = None,
        log_key: ec.EllipticCurvePrivateKey | None = None,
        logged_cert: x509.Certificate | None = None,
    ) -> dict[str, str]:
        """The annotations cosign would write for ``payload`` signed with ``leaf`` and logged at ``integrated``."""
        signature = self.signer_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {
                    "content": _b64(signature),
                    "publicKey": {"content": _b64((logged_cert or leaf).public_bytes(serialization.Encoding.PEM))},
                },
            },
        }
        key = log_key or self.rekor_key
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        entry: dict[str, Any] = {
            "body": _b64(json.dumps(body).encode()),
            "integratedTime": int((integrated or self.now).timestamp()),
            "logID": hashlib.sha256(spki).hexdigest(),
            "logIndex": 42,
        }
        promise = key.sign(rfc8785.dumps(entry), ec.ECDSA(hashes.SHA256()))
        pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        return {
            SIGNATURE_ANNOTATION: _b64(signature),
            CERTIFICATE_ANNOTATION: pem,
            CHAIN_ANNOTATION: "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                      for c in (self.intermediate, self.root)),
            BUNDLE_ANNOTATION: json.dumps({"SignedEntryTimestamp": _b64(promise), "Payload": entry}),
        }


def payload_for(digest: str) -> bytes:
    return (
        b'{"critical":{"identity":{"docker-reference":"registry.example/app"},"image":{"docker-manifest-digest":"'
        + digest.encode() + b'"},"type":"cosign container image signature"},"optional":null}'
    )


@pytest.fixture(scope="module")
def fake() -> FakeSigstore:
    return FakeSigstore()


def _verify(fake: FakeSigstore, notes: dict[str, str], root: TrustRoot | None = None,
            policy: IdentityPolicy | None = None) -> Any:
    return verify_keyless_signature(payload_for(SUBJECT), notes, SUBJECT, root or fake.trust_root(),
                                    policy=policy, source="s")


def test_fake_instance_chain_ok(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now - timedelta(minutes=1))
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf),
                    policy=IdentityPolicy(issuer="https://issuer.test", subject="dev@tollgate.test"))
    assert check.verified, check.reason
    assert check.identity == "dev@tollgate.test" and check.issuer == "https://issuer.test"
    assert check.log_index == 42 and check.integrated_time == fake.now
    assert check.workflow_repository is None


def test_fake_instance_layer_ok(fake: FakeSigstore) -> None:
    payload = payload_for(SUBJECT)
    notes = fake.sign(payload, fake.leaf(fake.now))
    layer = Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, sha256_digest(payload), len(payload), annotations=notes)
    assert verify_keyless_layer(layer, payload, SUBJECT, fake.trust_root(), policy=None, source="s").verified


def test_leaf_expired_at_integrated_time_is_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now - timedelta(hours=1))  # valid 11:00-11:10, logged at 12:00
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf))
    assert not check.verified
    assert check.reason.startswith("certificate was not valid at the integrated time 2025-06-01T12:00:00+00:00")


def test_leaf_not_yet_valid_at_integrated_time_is_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now + timedelta(minutes=1))
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf))
    assert not check.verified and check.reason.startswith("certificate was not valid at the integrated time")


def test_set_by_an_unknown_log_is_rejected(fake: FakeSigstore) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    check = _verify(fake, fake.sign(payload_for(SUBJECT), fake.leaf(fake.now), log_key=stranger))
    assert not check.verified
    assert check.reason.startswith("SET is from log ")
    assert "which the trusted root (test trusted root) lacks" in check.reason


def test_set_signed_by_another_key_under_the_known_log_id_is_rejected(fake: FakeSigstore) -> None:
    root = fake.trust_root(rekor_key=ec.generate_private_key(ec.SECP256R1()))
    notes = fake.sign(payload_for(SUBJECT), fake.leaf(fake.now))
    bundle = json.loads(notes[BUNDLE_ANNOTATION])
    bundle["Payload"]["logID"] = root.tlogs[0].log_id
    check = _verify(fake, {**notes, BUNDLE_ANNOTATION: json.dumps(bundle)}, root)
    assert not check.verified and check.reason.startswith("SET does not verify")


def test_ca_not_valid_at_integrated_time_is_rejected(fake: FakeSigstore) -> None:
    root = fake.trust_root(ca_end=fake.now - timedelta(days=1))
    check = _verify(fake, fake.sign(payload_for(SUBJECT), fake.leaf(fake.now)), root)
    assert not check.verified and check.reason.startswith("no Fulcio CA of the trusted root")


def test_leaf_from_an_untrusted_ca_is_rejected(fake: FakeSigstore) -> None:
    rogue_key = ec.generate_private_key(ec.SECP384R1())
    rogue = fake._ca(_name("test-intermediate"), rogue_key, rogue_key, _name("test-intermediate"),
                     fake.now - timedelta(days=1), fake.now + timedelta(days=1), 0)
    leaf = fake.leaf(fake.now, issuer_cert=rogue, issuer_key=rogue_key)
    notes = fake.sign(payload_for(SUBJECT), leaf)
    notes[CHAIN_ANNOTATION] = rogue.public_bytes(serialization.Encoding.PEM).decode()
    check = _verify(fake, notes)
    assert not check.verified and check.reason.startswith("certificate does not chain to a Fulcio CA")


def test_intermediate_from_the_chain_annotation_may_complete_the_path(fake: FakeSigstore) -> None:
    # The trusted root lists only the root; the annotation's intermediate is checked against it.
    root = fake.trust_root(with_intermediate=False)
    check = _verify(fake, fake.sign(payload_for(SUBJECT), fake.leaf(fake.now)), root)
    assert check.verified, check.reason


def test_leaf_without_code_signing_is_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf))
    assert not check.verified and check.reason == "certificate extended key usage lacks codeSigning"


def test_log_entry_for_another_certificate_is_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now)
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf, logged_cert=fake.leaf(fake.now)))
    assert not check.verified and check.reason == "Rekor entry records a different certificate"


def test_log_entry_for_another_payload_is_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now)
    notes = fake.sign(payload_for(SUBJECT), leaf)
    other = fake.sign(payload_for(sha256_digest(b"x")), leaf)
    # Same leaf key signs our payload, but the logged entry (and its SET) is for another one.
    check = _verify(fake, {**notes, BUNDLE_ANNOTATION: other[BUNDLE_ANNOTATION]})
    assert not check.verified
    assert check.reason == "Rekor entry is for another payload (its sha256 differs from the payload's)"


def test_identity_from_other_name_and_v2_extensions(fake: FakeSigstore) -> None:
    leaf = fake.leaf(
        fake.now,
        san=x509.OtherName(ObjectIdentifier(FULCIO + "7"), _utf8("robot-user")),
        issuer_ext=None,
        issuer_v2="https://gitlab.test",
        extra={FULCIO + "12": _utf8("https://github.com/org/repo"), FULCIO + "14": _utf8("refs/heads/main")},
    )
    found = certificate_identity(leaf)
    assert found.subject == "robot-user" and found.issuer == "https://gitlab.test"
    assert found.workflow_repository == "org/repo" and found.workflow_ref == "refs/heads/main"


def test_disagreeing_issuer_extensions_are_rejected(fake: FakeSigstore) -> None:
    leaf = fake.leaf(fake.now, issuer_ext="https://a.test", issuer_v2="https://b.test")
    check = _verify(fake, fake.sign(payload_for(SUBJECT), leaf))
    assert not check.verified and "issuer extensions disagree" in check.reason


def test_der_utf8_string_is_strict() -> None:
    assert der_utf8_string(b"\x0c\x02hi") == "hi"
    assert der_utf8_string(b"\x0c\x81\x02hi") == "hi"
    for bad in (b"", b"\x13\x02hi", b"\x0c\x05hi", b"\x0c\x80", b"\x0c\x02\xff\xfe"):
        with pytest.raises(Exception, match="certificate extension"):
            der_utf8_string(bad)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"mediaType":"x"}', "mediaType"),
        (b'{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}', "at least one"),
        (
            b'{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"publicKey":{},'
            b'"logId":{}}],"certificateAuthorities":[]}',
            "rawBytes",
        ),
    ],
)
def test_malformed_trusted_root_is_a_config_error(doc: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_trust_root(doc, "root.json")


def test_missing_trusted_root_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read trusted root"):
        load_trust_root(tmp_path / "absent.json")
