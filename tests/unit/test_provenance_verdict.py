"""Tollgate's signing key and the DSSE-signed SLSA Verification Summary statement."""

from __future__ import annotations

import base64
import json
import stat
import threading
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from workers.domain import Action, Category, Finding, Severity, Verdict, parse_digest
from workers.errors import ConfigError
from workers.provenance.keys import load_or_create_signing_key, load_signing_key
from workers.provenance.verdict import (
    VSA_PREDICATE,
    PolicyRef,
    VerdictInput,
    fingerprint,
    sign_statement,
    verdict_statement,
)
from workers.provenance.verify import check_envelope
from workers.signatures.keys import load_public_key

DIGEST = parse_digest("sha256:" + "88d6" * 16)


def make_input(action: Action = Action.ALLOW, findings: tuple[Finding, ...] = ()) -> VerdictInput:
    return VerdictInput(
        registry="registry.example:5000",
        repository="team/app",
        digest=DIGEST,
        verdict=Verdict.CLEAN if action is Action.ALLOW else Verdict.MALICIOUS,
        action=action,
        explanation="no findings",
        ruleset="rs-0123456789abcdef",
        ruleset_sha256="ab" * 32,
        policy=PolicyRef("http://tollgate.example/api/v1/policy/versions/3", "cd" * 32),
        verifier_id="http://tollgate.example/",
        findings=findings,
        inputs=({"uri": "registry.example:5000/team/app@sha256:" + "ca" * 32, "digest": {"sha256": "ca" * 32}},),
        signatures={"checked": 1, "verified": 1, "kinds": ["cosign-keyed"]},
        quarantined=False,
        provenance={"source": {"commit": "4b22"}, "missing": []},
    )


def test_key_is_generated_once_with_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "key.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_signing_key(path).public_pem == key.public_pem
    assert b"BEGIN PUBLIC KEY" in key.public_pem
    assert "PRIVATE" not in repr(key)
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind


def test_concurrent_first_use_ends_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    found: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: found.append(load_or_create_signing_key(path).public_pem)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1


def test_a_key_that_is_not_p256_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigError, match="P-256"):
        load_signing_key(path)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        load_signing_key(tmp_path / "junk.pem")


def test_statement_is_a_vsa_about_the_digest() -> None:
    finding = Finding(rule="miner.xmrig-config", severity=Severity.CRITICAL, category=Category.MINER, message="m")
    waived = Finding(
        rule="secret.key", severity=Severity.HIGH, category=Category.SECRET, message="s", waived=True, waiver_id=7
    )
    statement = verdict_statement(make_input(Action.QUARANTINE, (finding, waived)))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == VSA_PREDICATE
    assert statement["subject"] == [{"name": "registry.example:5000/team/app", "digest": {"sha256": "88d6" * 16}}]
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "FAILED"
    assert predicate["verifiedLevels"] == ["FAILED"]
    assert predicate["resourceUri"] == f"registry.example:5000/team/app@{DIGEST}"
    assert predicate["policy"] == {
        "uri": "http://tollgate.example/api/v1/policy/versions/3",
        "digest": {"sha256": "cd" * 32},
    }
    assert predicate["tollgate"]["findings"] == {
        "total": 2,
        "counted": 1,
        "waived": 1,
        "by_severity": {"critical": 1},
        "rules": ["miner.xmrig-config"],
    }
    assert predicate["tollgate"]["override"] == {"waivers": [7], "quarantined": False}
    assert verdict_statement(make_input())["predicate"]["verificationResult"] == "PASSED"


def test_fingerprint_ignores_the_time_only() -> None:
    from datetime import UTC, datetime

    early = verdict_statement(make_input(), now=datetime(2026, 1, 1, tzinfo=UTC))
    late = verdict_statement(make_input(), now=datetime(2026, 6, 1, tzinfo=UTC))
    assert early != late
    assert fingerprint(early) == fingerprint(late)
    assert fingerprint(verdict_statement(make_input(Action.QUARANTINE))) != fingerprint(early)


def test_envelope_verifies_with_cryptography_and_tampering_fails(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "key.pem")
    envelope = sign_statement(verdict_statement(make_input()), key)
    document = json.loads(envelope)
    assert document["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(document["payload"])
    public = serialization.load_pem_public_key(key.public_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
    public.verify(base64.b64decode(document["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256()))

    keys = [load_public_key(key.public_pem, "tollgate")]
    assert check_envelope(envelope, DIGEST, keys, "test").verified
    other = parse_digest("sha256:" + "11" * 32)
    assert "not sha256:" + "11" * 32 in check_envelope(envelope, other, keys, "test").reason

    forged = payload.replace(b"PASSED", b"FAILED")
    document["payload"] = base64.b64encode(forged).decode()
    tampered = json.dumps(document).encode()
    forged_pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(forged), forged)
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(document["signatures"][0]["sig"]), forged_pae, ec.ECDSA(hashes.SHA256()))
    check = check_envelope(tampered, DIGEST, keys, "test")
    assert not check.verified
    assert "no DSSE signature verifies" in check.reason
