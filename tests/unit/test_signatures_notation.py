"""Notation JWS signatures: envelope, header rules, alg binding, chain to the trust store, target, identities."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.notation import JWS_MEDIA_TYPE, LEAF_SUBJECT, NotationSigner, rsa_key
from workers.domain import Digest
from workers.errors import ConfigError
from workers.policy import parse_policy
from workers.signatures.model import SignatureCheck, SignatureKind
from workers.signatures.notation import (
    COSE_MEDIA_TYPE,
    NotationTrust,
    load_trust_store,
    notation_trust,
    parse_identity,
    verify_notation_envelope,
)

IMAGE = Digest("sha256:" + "12" * 32)
TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": IMAGE, "size": 524}
TRUSTED = "C=US, O=Acme Rockets, CN=release-signer"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> NotationSigner:
    return NotationSigner(tmp_path_factory.mktemp("notation"))


@pytest.fixture(scope="module")
def trust(signer: NotationSigner) -> NotationTrust:
    return notation_trust(load_trust_store(signer.trust_store), [TRUSTED], str(signer.trust_store))


def _verify(envelope: bytes, trust: NotationTrust, *, media_type: str = JWS_MEDIA_TYPE) -> SignatureCheck:
    return verify_notation_envelope(media_type, envelope, IMAGE, trust, now=datetime.now(UTC), source="sha256:ref")


def _edit(envelope: bytes, **changes: Any) -> bytes:
    return json.dumps({**json.loads(envelope), **changes}).encode()


def test_an_ecdsa_signature_verifies_and_names_the_signer(signer: NotationSigner, trust: NotationTrust) -> None:
    check = _verify(signer.envelope(TARGET), trust)
    assert check.verified, check.reason
    assert check.kind is SignatureKind.NOTATION
    assert check.identity is not None and "CN=release-signer" in check.identity
    assert check.issuer is not None and "CN=Acme Test Root" in check.issuer
    assert check.integrated_time is not None


def test_an_rsa_pss_signature_verifies(signer: NotationSigner, trust: NotationTrust) -> None:
    leaf = signer.leaf(key=rsa_key())
    assert _verify(signer.envelope(TARGET, leaf=leaf), trust).verified


def test_a_signature_for_another_digest_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    check = _verify(signer.envelope({**TARGET, "digest": "sha256:" + "34" * 32}), trust)
    assert not check.verified and f"not {IMAGE}" in check.reason


def test_a_tampered_payload_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    envelope = signer.envelope(TARGET)
    forged = base64.urlsafe_b64encode(json.dumps({"targetArtifact": TARGET}).encode() + b" ").rstrip(b"=").decode()
    check = _verify(_edit(envelope, payload=forged), trust)
    assert not check.verified and "does not verify" in check.reason


def test_an_untrusted_root_fails(signer: NotationSigner, tmp_path: Path) -> None:
    other = NotationSigner(tmp_path / "other", name="Other Root")
    check = _verify(other.envelope(TARGET), notation_trust(load_trust_store(signer.trust_store), [TRUSTED], "store"))
    assert not check.verified and "trust store" in check.reason


def test_an_untrusted_identity_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    leaf = signer.leaf({**LEAF_SUBJECT, "CN": "intern-laptop"})
    check = _verify(signer.envelope(TARGET, leaf=leaf), trust)
    assert not check.verified and "not a trusted identity" in check.reason and "intern-laptop" in check.reason


def test_any_identity_accepts_every_signer_the_store_vouches_for(signer: NotationSigner) -> None:
    anyone = notation_trust(load_trust_store(signer.trust_store), ["*"], "store")
    assert _verify(signer.envelope(TARGET, leaf=signer.leaf({**LEAF_SUBJECT, "CN": "x"})), anyone).verified


def test_an_expired_leaf_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    check = _verify(signer.envelope(TARGET, leaf=signer.leaf(expired=True)), trust)
    assert not check.verified and "not valid now" in check.reason


def test_a_leaf_without_code_signing_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    check = _verify(signer.envelope(TARGET, leaf=signer.leaf(code_signing=False)), trust)
    assert not check.verified and "codeSigning" in check.reason


def test_a_passed_expiry_fails(signer: NotationSigner, trust: NotationTrust) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    header = {"io.cncf.notary.expiry": past, "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]}
    check = _verify(signer.envelope(TARGET, header=header), trust)
    assert not check.verified and "expired" in check.reason


@pytest.mark.parametrize(
    ("header", "alg", "why"),
    [
        (
            {"crit": ["io.cncf.notary.signingScheme", "io.example.mustUnderstand"], "io.example.mustUnderstand": 1},
            None,
            "does not understand",
        ),
        ({"crit": []}, None, "crit must be a list naming"),
        ({"crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]}, None, "absent"),
        ({"io.cncf.notary.signingScheme": "notary.x509.signingAuthority"}, None, "not supported"),
        ({"cty": "application/json"}, None, "cty"),
        ({}, "ES384", "does not fit"),  # algorithm substitution: the key is P-256
        ({}, "HS256", "not one Notation allows"),
        ({"io.cncf.notary.signingTime": "yesterday"}, None, "RFC 3339"),
    ],
)
def test_header_rules(
    signer: NotationSigner, trust: NotationTrust, header: dict[str, Any], alg: str | None, why: str
) -> None:
    check = _verify(signer.envelope(TARGET, header=header, alg=alg), trust)
    assert not check.verified and why in check.reason, check.reason


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda e: b"{not json", "JWS envelope"),
        (lambda e: _edit(e, signatures=[]), "flattened"),
        (lambda e: _edit(e, signature="!!"), "base64url"),
        (lambda e: _edit(e, header={"x5c": []}), "x5c"),
        (lambda e: _edit(e, header={"x5c": ["bm90IGEgY2VydA=="]}), "x5c[0]"),
        (lambda e: _edit(e, header={"x5c": [7]}), "not a string"),
        (lambda e: _edit(e, protected=base64.urlsafe_b64encode(b"[1]").decode().rstrip("=")), "not a JSON object"),
    ],
)
def test_hostile_envelopes_are_reasons(signer: NotationSigner, trust: NotationTrust, edit: Any, why: str) -> None:
    check = _verify(edit(signer.envelope(TARGET)), trust)
    assert not check.verified and why in check.reason, check.reason


def test_cose_and_a_missing_trust_store_are_recorded_not_verified(signer: NotationSigner, trust: NotationTrust) -> None:
    assert "COSE" in _verify(b"\xd2\x84", trust, media_type=COSE_MEDIA_TYPE).reason
    empty = NotationTrust((), (), "none")
    assert "no notation trust store" in _verify(signer.envelope(TARGET), empty).reason


def test_identity_texts() -> None:
    identity = parse_identity("x509.subject: C=US, O=Acme\\, Inc., CN=release")
    assert len(identity.attributes) == 3 and any(v == "Acme, Inc." for _, v in identity.attributes)
    assert parse_identity("*").attributes == frozenset()
    for bad in ("CN", "XX=1", "C=US, =x", "O="):
        with pytest.raises(ConfigError, match="not ATTR=value"):
            parse_identity(bad)


def test_trust_store_files(signer: NotationSigner, tmp_path: Path) -> None:
    assert len(load_trust_store(signer.trust_store)) == 1
    assert len(load_trust_store(signer.trust_store.parent)) >= 1  # a directory of PEM files
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"no certificates|not PEM"):
        load_trust_store(tmp_path / "junk.pem")
    leaf, _ = signer.leaf()
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="not a CA certificate"):
        load_trust_store(tmp_path / "leaf.pem")
    with pytest.raises(ConfigError, match="notation trust store"):
        load_trust_store(tmp_path / "missing.pem")


def test_the_policy_reads_notation_trust(signer: NotationSigner, tmp_path: Path) -> None:
    text = f"""
version: 1
default:
  signatures:
    required: true
    notation:
      trust_store: {signer.trust_store}
      identities: ["{TRUSTED}"]
"""
    trust = parse_policy(text, "policy.yaml").for_repository("team/app").signatures
    assert trust.required and trust.notation is not None and trust.notation.configured
    assert trust.to_json()["notation"]["identities"] == [TRUSTED]
    for broken, why in [
        ("notation: {identities: ['*']}", "trust_store"),
        (f"notation: {{trust_store: {signer.trust_store}}}", "identities"),
        (f"notation: {{trust_store: {signer.trust_store}, identities: ['CN']}}", "not ATTR=value"),
        (f"notation: {{trust_store: {tmp_path / 'none.pem'}, identities: ['*']}}", "notation trust store"),
        (f"notation: {{trust_store: {signer.trust_store}, identities: ['*'], extra: 1}}", "extra"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_policy(f"version: 1\ndefault:\n  signatures:\n    {broken}\n", "policy.yaml")


def test_p384_leaves_need_es384(signer: NotationSigner, trust: NotationTrust) -> None:
    leaf = signer.leaf(key=ec.generate_private_key(ec.SECP384R1()))
    check = _verify(signer.envelope(TARGET, leaf=leaf), trust)  # signed with ES256 over a P-384 key
    assert not check.verified and "ES384" in check.reason
