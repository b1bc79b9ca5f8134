"""Keyed cosign checks: .sig simple signing and .att DSSE, made here the way cosign makes them, and a real one."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from workers.domain import Descriptor, Digest, parse_digest, sha256_digest
from workers.errors import ConfigError, SignatureError
from workers.signatures.keyed import (
    BUNDLE_ANNOTATION,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    load_public_key,
    load_public_key_file,
    pae,
    verify_attestation_layer,
    verify_dsse_envelope,
    verify_keyed_signature,
    verify_signature_layer,
)
from workers.signatures.model import SignatureKind
from workers.signatures.simplesigning import SIMPLE_SIGNING_MEDIA_TYPE, parse_simple_signing
from workers.signatures.trustroot import production_trust_root

FIXTURES = Path("/work/shared/fixtures/cosign-real")
ZOT = FIXTURES / "zot-demo-keyed"
ZOT_SUBJECT = parse_digest("sha256:2f0249ebb962c1281b791aafe68ec39caa2751eecad1c6a5042cbdc43548d764")
SUBJECT = sha256_digest(b"the image manifest")
OTHER = sha256_digest(b"another image manifest")

Signer = Callable[[bytes], bytes]


def payload_for(digest: str, kind: str = "cosign container image signature", optional: Any = None) -> bytes:
    """A simple-signing payload laid out as cosign writes it (compact, keys in cosign's order)."""
    doc = {
        "critical": {
            "identity": {"docker-reference": "registry.example/team/app"},
            "image": {"docker-manifest-digest": digest},
            "type": kind,
        },
        "optional": optional,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _pem(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _ecdsa() -> tuple[bytes, Signer]:
    private = ec.generate_private_key(ec.SECP256R1())
    return _pem(private.public_key()), lambda data: private.sign(data, ec.ECDSA(hashes.SHA256()))


def _rsa_pkcs1() -> tuple[bytes, Signer]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pem(private.public_key()), lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _rsa_pss() -> tuple[bytes, Signer]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    scheme = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return _pem(private.public_key()), lambda data: private.sign(data, scheme, hashes.SHA256())


def _ed25519() -> tuple[bytes, Signer]:
    private = ed25519.Ed25519PrivateKey.generate()
    return _pem(private.public_key()), private.sign


KEY_TYPES = {"ecdsa-p256": _ecdsa, "rsa-pkcs1v15": _rsa_pkcs1, "rsa-pss": _rsa_pss, "ed25519": _ed25519}


@pytest.fixture(params=sorted(KEY_TYPES))
def keypair(request: pytest.FixtureRequest) -> tuple[bytes, Signer]:
    return KEY_TYPES[request.param]()


@pytest.fixture(scope="module")
def ec_pair() -> tuple[bytes, Signer]:
    return _ecdsa()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sig_layer(payload: bytes, signature: str | None, **annotations: str) -> Descriptor:
    notes = dict(annotations)
    if signature is not None:
        notes[SIGNATURE_ANNOTATION] = signature
    return Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, sha256_digest(payload), len(payload), annotations=notes)


# --- simple signing -------------------------------------------------------------------------------------------


def test_good_signature_verifies_with_each_key_type(keypair: tuple[bytes, Signer]) -> None:
    pem, sign = keypair
    key = load_public_key(pem, "team.pub")
    payload = payload_for(SUBJECT)
    check = verify_signature_layer(sig_layer(payload, b64(sign(payload))), payload, SUBJECT, [key], source="t.sig")
    assert check.verified, check.reason
    assert check.kind is SignatureKind.COSIGN_KEYED
    assert check.identity == key.key_id
    assert check.reason == f"signed by key team.pub ({key.algorithm})"
    assert check.source == "t.sig" and check.subject == SUBJECT


def test_second_configured_key_is_tried(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    payload = payload_for(SUBJECT)
    keys = [load_public_key(_ed25519()[0], "old"), load_public_key(pem, "new")]
    check = verify_keyed_signature(payload, b64(sign(payload)), SUBJECT, keys, source="s")
    assert check.verified and check.reason.startswith("signed by key new")


def test_wrong_key_is_rejected(keypair: tuple[bytes, Signer]) -> None:
    _, sign = keypair
    other = load_public_key(_ecdsa()[0], "other.pub")
    payload = payload_for(SUBJECT)
    check = verify_keyed_signature(payload, b64(sign(payload)), SUBJECT, [other], source="s")
    assert not check.verified
    assert check.reason == "signature does not verify with any of the 1 configured keys"
    assert check.identity is None


def test_tampered_payload_is_rejected(keypair: tuple[bytes, Signer]) -> None:
    pem, sign = keypair
    payload = payload_for(SUBJECT)
    signature = b64(sign(payload))
    tampered = payload.replace(b'"optional":null', b'"optional":{}')
    check = verify_keyed_signature(tampered, signature, SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified and "does not verify" in check.reason


def test_payload_for_another_digest_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    payload = payload_for(OTHER)
    check = verify_keyed_signature(payload, b64(sign(payload)), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified
    assert check.reason == f"payload is for {OTHER}"


def test_wrong_payload_type_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    payload = payload_for(SUBJECT, kind="atomic container signature")
    check = verify_keyed_signature(payload, b64(sign(payload)), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified
    assert check.reason == "payload type is 'atomic container signature', not 'cosign container image signature'"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("not base64!", "is not valid base64"),
        ("QUJD=", "is not valid base64"),  # bad padding
        ("", "is empty"),
        ("   ", "is empty"),
        (None, "is missing or not a string"),
    ],
)
def test_bad_signature_annotation_is_rejected(
    ec_pair: tuple[bytes, Signer], signature: str | None, reason: str
) -> None:
    payload = payload_for(SUBJECT)
    layer = sig_layer(payload, signature)
    check = verify_signature_layer(layer, payload, SUBJECT, [load_public_key(ec_pair[0])], source="s")
    assert not check.verified
    assert check.reason.startswith(f"signature annotation {SIGNATURE_ANNOTATION}")
    assert reason in check.reason


def test_signature_that_is_not_der_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    payload = payload_for(SUBJECT)
    check = verify_keyed_signature(payload, b64(b"\x00" * 64), SUBJECT, [load_public_key(ec_pair[0])], source="s")
    assert not check.verified and "does not verify" in check.reason


def test_no_keys_configured_is_not_a_pass(ec_pair: tuple[bytes, Signer]) -> None:
    payload = payload_for(SUBJECT)
    check = verify_keyed_signature(payload, b64(ec_pair[1](payload)), SUBJECT, [], source="s")
    assert not check.verified and check.reason == "no public keys are configured"


def test_layer_blob_and_media_type_are_checked(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    payload = payload_for(SUBJECT)
    layer = sig_layer(payload, b64(sign(payload)))
    key = load_public_key(pem)
    other_blob = payload_for(SUBJECT, optional={"a": "b"})
    assert verify_signature_layer(layer, other_blob, SUBJECT, [key], source="s").reason.startswith(
        "layer blob does not match its digest"
    )
    wrong_type = Descriptor("application/octet-stream", layer.digest, layer.size, annotations=layer.annotations)
    assert "layer media type" in verify_signature_layer(wrong_type, payload, SUBJECT, [key], source="s").reason


# --- keys -----------------------------------------------------------------------------------------------------


def test_key_id_is_sha256_of_spki_der(ec_pair: tuple[bytes, Signer]) -> None:
    key = load_public_key(ec_pair[0])
    der = serialization.load_pem_public_key(ec_pair[0]).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.key_id == hashlib.sha256(der).hexdigest()
    assert key.algorithm == "ecdsa-p256" and key.name == key.key_id[:16]


def _private_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", "not a PEM public key"),
        (b"hello", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "malformed PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\n", "malformed PEM public key"),
        (b"x" * 70000, "more than"),
    ],
)
def test_malformed_pem_key_is_a_config_error(pem: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_public_key(pem, "bad.pub")


def test_private_key_is_refused_with_advice() -> None:
    with pytest.raises(ConfigError, match="private key"):
        load_public_key(_private_pem())


def test_unsupported_keys_are_refused() -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(ConfigError, match="too small"):
        load_public_key(_pem(small_rsa))
    with pytest.raises(ConfigError, match="unsupported elliptic curve"):
        load_public_key(_pem(ec.generate_private_key(ec.SECP256K1()).public_key()))
    with pytest.raises(ConfigError, match="unsupported public key type"):
        load_public_key(_pem(dsa.generate_private_key(key_size=2048).public_key()))


def test_key_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.pub: cannot read"):
        load_public_key_file(tmp_path / "missing.pub")
    bad = tmp_path / "bad.pub"
    bad.write_text("nope")
    with pytest.raises(ConfigError, match=r"bad\.pub"):
        load_public_key_file(bad)


# --- hostile payloads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "not"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper"),
        (b'{"critical":{"type":"cosign container image signature"},"optional":' + b"0" * 300_000 + b"}", "bytes"),
        (b'{"critical":{"image":{"docker-manifest-digest":"sha256:' + b"1" * 5000 + b'"}}}', "type is"),
        (b"[]", "not a JSON object"),
        (b'"critical"', "not a JSON object"),
        (b'{"critical":[]}', "no 'critical' object"),
        (b'{"critical":{"type":7}}', "payload type is 'int'"),
        (b'{"critical":{"type":"cosign container image signature","image":"sha256:1"}}', "critical.image"),
        (
            b'{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":5}}}',
            "no 'docker-manifest-digest' string",
        ),
        (
            b'{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"md5:x"}}}',
            "is not a valid digest",
        ),
        (b'{"critical":{"type":NaN}}', "NaN"),
        (b'{"critical":{},"critical":{}}', "duplicate key"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"critical":{"type":"cosign container image signature"}} trailing', "not valid JSON"),
        (b'{"a":1' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_hostile_payloads_give_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        parse_simple_signing(payload)


def test_hostile_payload_with_a_valid_signature_is_a_check_not_an_exception(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    payload = b"[" * 50_000 + b"]" * 50_000
    check = verify_keyed_signature(payload, b64(sign(payload)), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified and "simple-signing payload" in check.reason


def test_manifest_digest_key_matches_case_insensitively_like_go() -> None:
    payload = (
        b'{"Critical":{"Image":{"Docker-manifest-digest":"' + SUBJECT.encode() + b'"},'
        b'"TYPE":"cosign container image signature"},"optional":{"build":"1"}}'
    )
    parsed = parse_simple_signing(payload)
    assert parsed.manifest_digest == SUBJECT and parsed.optional == {"build": "1"}
    assert parsed.docker_reference is None


def test_two_case_variants_of_a_key_are_ambiguous() -> None:
    payload = (
        b'{"critical":{"image":{"docker-manifest-digest":"' + SUBJECT.encode() + b'",'
        b'"Docker-Manifest-Digest":"' + OTHER.encode() + b'"},"type":"cosign container image signature"}}'
    )
    with pytest.raises(SignatureError, match="ambiguous"):
        parse_simple_signing(payload)


# --- DSSE -----------------------------------------------------------------------------------------------------


def statement_for(digest: Digest, statement_type: str = "https://in-toto.io/Statement/v1") -> bytes:
    algorithm, _, value = digest.partition(":")
    doc = {
        "_type": statement_type,
        "subject": [{"name": "registry.example/team/app", "digest": {algorithm: value}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/build"}},
    }
    return json.dumps(doc).encode()


def envelope(sign: Signer, statement: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE, **overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "payloadType": payload_type,
        "payload": b64(statement),
        "signatures": [{"keyid": "", "sig": b64(sign(pae(payload_type, statement)))}],
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_pae_matches_the_dsse_spec_vector() -> None:
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == expected
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "


@pytest.mark.parametrize("statement_type", ["https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"])
def test_dsse_good_envelope_returns_the_statement(keypair: tuple[bytes, Signer], statement_type: str) -> None:
    pem, sign = keypair
    key = load_public_key(pem, "att.pub")
    blob = envelope(sign, statement_for(SUBJECT, statement_type))
    layer = Descriptor(DSSE_MEDIA_TYPE, sha256_digest(blob), len(blob), annotations={"predicateType": "x"})
    check = verify_attestation_layer(layer, blob, SUBJECT, [key], source="t.att")
    assert check.verified, check.reason
    assert check.kind is SignatureKind.ATTESTATION_KEYED
    assert check.predicate_type == "https://slsa.dev/provenance/v1"
    assert check.statement is not None and check.statement["_type"] == statement_type
    assert check.identity == key.key_id


def test_dsse_url_safe_base64_is_accepted(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    statement = statement_for(SUBJECT)
    doc = json.loads(envelope(sign, statement))
    doc["payload"] = base64.urlsafe_b64encode(statement).decode()
    assert verify_dsse_envelope(json.dumps(doc).encode(), SUBJECT, [load_public_key(pem)], source="s").verified


def test_dsse_tampered_payload_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    doc = json.loads(envelope(sign, statement_for(SUBJECT)))
    doc["payload"] = b64(statement_for(SUBJECT).replace(b"example.com/build", b"evil.example/build"))
    check = verify_dsse_envelope(json.dumps(doc).encode(), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified
    assert check.reason == "no DSSE signature verifies with any of the 1 configured keys"
    assert check.statement is None


def test_dsse_signature_over_raw_payload_instead_of_pae_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    statement = statement_for(SUBJECT)
    doc = json.loads(envelope(sign, statement))
    doc["signatures"] = [{"sig": b64(sign(statement))}]
    check = verify_dsse_envelope(json.dumps(doc).encode(), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified and "no DSSE signature verifies" in check.reason


def test_dsse_wrong_subject_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    check = verify_dsse_envelope(envelope(sign, statement_for(OTHER)), SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified
    assert check.reason == f"statement is for {OTHER}, not {SUBJECT}"


def test_dsse_wrong_payload_type_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    pem, sign = ec_pair
    blob = envelope(sign, statement_for(SUBJECT), payload_type="application/json")
    check = verify_dsse_envelope(blob, SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified
    assert check.reason == f"DSSE payloadType is 'application/json', not {IN_TOTO_PAYLOAD_TYPE}"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"signatures": []}, "DSSE envelope has no signatures"),
        ({"signatures": [{"keyid": "", "sig": ""}]}, "DSSE signatures[0].sig is missing, empty or not a string"),
        ({"signatures": [{"sig": "%%%"}]}, "DSSE signatures[0].sig is not valid base64"),
        ({"signatures": ["sig"]}, "DSSE signatures[0] is not an object"),
        ({"signatures": [{"sig": "AAAA"}] * 17}, "more than 16"),
        ({"payload": "!!"}, "DSSE payload is not valid base64"),
        ({"payloadType": None}, "no payloadType string"),
    ],
)
def test_dsse_malformed_envelopes_are_rejected(
    ec_pair: tuple[bytes, Signer], overrides: dict[str, Any], reason: str
) -> None:
    pem, sign = ec_pair
    blob = envelope(sign, statement_for(SUBJECT), **overrides)
    check = verify_dsse_envelope(blob, SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified and reason in check.reason


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ({"_type": "https://in-toto.io/Statement/v2", "subject": [], "predicateType": "p"}, "_type is"),
        ({"_type": "https://in-toto.io/Statement/v1", "subject": [], "predicateType": "p"}, "no subject list"),
        ({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x"}], "predicateType": "p"}, "digest"),
        (
            {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"sha256": 1}}], "predicateType": "p"},
            "not strings",
        ),
        ({"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"sha256": "a"}}]}, "no predicateType"),
        (
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"digest": {"sha256": "a"}}],
                "predicateType": "p",
                "predicate": [1],
            },
            "predicate is not an object",
        ),
    ],
)
def test_dsse_malformed_statements_are_rejected(
    ec_pair: tuple[bytes, Signer], statement: dict[str, Any], reason: str
) -> None:
    pem, sign = ec_pair
    blob = envelope(sign, json.dumps(statement).encode())
    check = verify_dsse_envelope(blob, SUBJECT, [load_public_key(pem)], source="s")
    assert not check.verified and reason in check.reason


def test_dsse_hostile_envelope_is_a_check() -> None:
    key = load_public_key(_ecdsa()[0])
    for blob in (b"{" * 10_000, b"\x00\x01", b"null", b'{"payloadType":"x","payload":"e30=","signatures":{}}'):
        check = verify_dsse_envelope(blob, SUBJECT, [key], source="s")
        assert not check.verified and check.reason


# --- the real zot-demo signature (ECDSA P-256, logged in the public Rekor) ------------------------------------


def zot_layer() -> tuple[Descriptor, bytes]:
    manifest = json.loads((ZOT / "manifest.json").read_text())
    raw = manifest["layers"][0]
    layer = Descriptor(raw["mediaType"], parse_digest(raw["digest"]), raw["size"], annotations=raw["annotations"])
    return layer, (ZOT / "payload.json").read_bytes()


def with_annotation(layer: Descriptor, name: str, value: str) -> Descriptor:
    return Descriptor(layer.media_type, layer.digest, layer.size, annotations={**layer.annotations, name: value})


def flip(text: str, index: int = 10) -> str:
    """Change one base64 character (so the decoded bytes differ) at ``index``."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_real_zot_keyed_signature_verifies() -> None:
    layer, payload = zot_layer()
    key = load_public_key_file(ZOT / "cosign.pub")
    check = verify_signature_layer(layer, payload, ZOT_SUBJECT, [key], source="demo:sha256-2f02.sig")
    assert check.verified, check.reason
    assert check.identity == key.key_id and check.log_index is None


def test_real_zot_keyed_signature_with_its_rekor_entry_verifies_offline() -> None:
    layer, payload = zot_layer()
    key = load_public_key_file(ZOT / "cosign.pub")
    check = verify_signature_layer(layer, payload, ZOT_SUBJECT, [key], source="s", trust_root=production_trust_root())
    assert check.verified, check.reason
    assert check.log_index == 357097618
    assert check.integrated_time is not None and int(check.integrated_time.timestamp()) == 1754488662


def test_real_zot_tampered_variants_fail() -> None:
    layer, payload = zot_layer()
    key = load_public_key_file(ZOT / "cosign.pub")
    root = production_trust_root()
    tampered = payload.replace(b"null", b"{}")
    check = verify_keyed_signature(tampered, layer.annotations[SIGNATURE_ANNOTATION], ZOT_SUBJECT, [key], source="s")
    assert not check.verified and "does not verify" in check.reason
    flipped = with_annotation(layer, SIGNATURE_ANNOTATION, flip(layer.annotations[SIGNATURE_ANNOTATION]))
    assert "does not verify" in verify_signature_layer(flipped, payload, ZOT_SUBJECT, [key], source="s").reason
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["SignedEntryTimestamp"] = flip(bundle["SignedEntryTimestamp"], 20)
    bad_set = with_annotation(layer, BUNDLE_ANNOTATION, json.dumps(bundle))
    check = verify_signature_layer(bad_set, payload, ZOT_SUBJECT, [key], source="s", trust_root=root)
    assert not check.verified and check.reason.startswith("SET does not verify")
    check = verify_signature_layer(layer, payload, OTHER, [key], source="s")
    assert not check.verified and check.reason == f"payload is for {ZOT_SUBJECT}"


def test_real_zot_bundle_with_another_key_is_rejected(ec_pair: tuple[bytes, Signer]) -> None:
    # Re-signing the payload with our key keeps the SET valid but the log recorded cosign.pub's signature.
    layer, payload = zot_layer()
    pem, sign = ec_pair
    resigned = with_annotation(layer, SIGNATURE_ANNOTATION, b64(sign(payload)))
    check = verify_signature_layer(
        resigned, payload, ZOT_SUBJECT, [load_public_key(pem)], source="s", trust_root=production_trust_root()
    )
    assert not check.verified and check.reason == "Rekor entry records a different signature"
