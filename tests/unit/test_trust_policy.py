"""The signature trust policy: its schema, the grace-period decision, and checks of found signatures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.sigstore import (
    DEFAULT_IDENTITY,
    DEFAULT_ISSUER,
    SIMPLE_SIGNING_MEDIA_TYPE,
    PrivateSigstore,
    simple_signing_payload,
)
from workers.domain import Action, Digest, SignatureState, sha256_digest
from workers.errors import ConfigError
from workers.policy import TrustPolicy, decide, judge_signatures, parse_policy
from workers.signatures.discovery import BundleReferrer, Discovered, LegacyLayer
from workers.signatures.identity import IdentityPolicy
from workers.signatures.keys import load_public_key
from workers.signatures.model import SignatureCheck, SignatureFormat, SignatureKind
from workers.signatures.verify import verify_discovered

SUBJECT = Digest("sha256:" + "ab" * 32)
OTHER = Digest("sha256:" + "cd" * 32)
PUSHED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "release.pub"
    path.write_bytes(_pem(key))
    return key, path


# ---------------------------------------------------------------------------------------------- schema


def test_schema_loads_keys_identities_and_inherits_from_default(
    tmp_path: Path, key_file: tuple[ec.EllipticCurvePrivateKey, Path], private_sigstore: PrivateSigstore
) -> None:
    _, path = key_file
    text = f"""\
version: 1
default:
  signatures:
    required: true
    keys: [release.pub]
    grace_seconds: 60
repositories:
  - match: "prod/**"
    signatures:
      unsigned: warn
      identities:
        - issuer: {DEFAULT_ISSUER}
          subject_regexp: ".+@example\\\\.com"
          workflow_repository: acme/app
      trusted_root: {private_sigstore.trusted_root_path}
  - match: "sandbox/*"
    signatures: {{required: false, keys: []}}
  - match: "team/*"
    actions: {{suspicious: quarantine}}
"""
    policy = parse_policy(text, "p.yaml", base_dir=tmp_path)  # relative key paths: next to the policy file
    default = policy.for_repository("other/app").signatures
    assert default.required and default.unsigned is Action.QUARANTINE and default.grace_seconds == 60
    assert [k.name for k in default.keys] == [path.name] and default.identities == ()
    assert default.trusted_root is None

    prod = policy.for_repository("prod/api").signatures
    assert prod.required and prod.unsigned is Action.WARN and prod.grace_seconds == 60  # inherited key by key
    assert prod.keys == default.keys  # not given: the default's list
    assert prod.identities == (
        IdentityPolicy(issuer=DEFAULT_ISSUER, subject_regexp=r".+@example\.com", workflow_repository="acme/app"),
    )
    assert prod.trusted_root == private_sigstore.trusted_root_path

    sandbox = policy.for_repository("sandbox/x").signatures
    assert not sandbox.required and sandbox.keys == ()  # a list given replaces the default's, [] clears
    assert policy.for_repository("team/x").signatures == default  # no signatures key: the default's whole
    assert policy.for_repository("team/x").to_json()["signatures"]["keys"] == ["release.pub"]


def test_no_signatures_key_means_no_trust_policy() -> None:
    trust = parse_policy("version: 1\n", "p.yaml").for_repository("a/b").signatures
    assert trust == TrustPolicy() and not trust.configured


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  signatures: []\n", r"p\.yaml:3: default\.signatures: must be a mapping, got a list"),
        ("  signatures: {required: 'yes'}\n", r"default\.signatures\.required: must be true or false"),
        ("  signatures: {grace_seconds: -1}\n", r"default\.signatures\.grace_seconds: -1 is not a whole number"),
        ("  signatures: {grace_seconds: true}\n", r"grace_seconds: True is not a whole number"),
        ("  signatures: {grace_seconds: 1.5}\n", r"grace_seconds: 1.5 is not a whole number"),
        ("  signatures: {keys: k.pub}\n", r"default\.signatures\.keys: must be a list of public key files"),
        (
            "  signatures:\n    keys:\n      - missing.pub\n",
            r"p\.yaml:5: default\.signatures\.keys\[0\]: .*cannot read",
        ),
        ("  signatures:\n    keys: [bad.pub]\n", r"p\.yaml:4: default\.signatures\.keys\[0\]: .*not a PEM public key"),
        ("  signatures:\n    keys: [priv.pem]\n", r"keys\[0\]: .*this is a private key"),
        ("  signatures:\n    keys: [5]\n", r"keys\[0\]: must be a file path, got int"),
        ("  signatures:\n    identities: [{subject: a@b.c}]\n", r"p\.yaml:4: .*identities\[0\]\.issuer: required"),
        (
            "  signatures:\n    identities: [{issuer: i, subject: a, subject_regexp: b}]\n",
            r"identities\[0\]: identity policy needs a subject or a subject_regexp \(exactly one",
        ),
        ("  signatures:\n    identities: [{issuer: i}]\n", r"identities\[0\]: identity policy needs a subject"),
        (
            "  signatures:\n    identities: [{issuer: i, subject_regexp: '(('}]\n",
            r"identities\[0\]: .*does not compile",
        ),
        ("  signatures:\n    identities: [{issuer: i, email: x}]\n", r"identities\[0\]\.email: unknown key"),
        (
            "  signatures:\n    identities: [{issuer: i, subject: 5}]\n",
            r"identities\[0\]\.subject: must be a non-empty",
        ),
        (
            "  signatures:\n    trusted_root: nope.json\n",
            r"p\.yaml:4: default\.signatures\.trusted_root: .*cannot read",
        ),
        ("  signatures:\n    trusted_root: bad.pub\n", r"default\.signatures\.trusted_root: "),
    ],
)
def test_schema_refuses_bad_input(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "bad.pub").write_text("not a key\n")
    private = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "priv.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigError, match=expected):
        parse_policy(f"version: 1\ndefault:\n{body}", "p.yaml", base_dir=tmp_path)


def test_required_without_signers_is_refused_after_inheritance(
    key_file: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    _, path = key_file
    inherited = f"version: 1\ndefault:\n  signatures: {{keys: [{path}]}}\nrepositories:\n  - match: a/*\n"
    assert parse_policy(inherited + "    signatures: {required: true}\n").for_repository("a/b").signatures.required
    with pytest.raises(ConfigError, match=r":6: repositories\[0\]\.signatures: required: true needs keys"):
        parse_policy(inherited + "    signatures: {required: true, keys: []}\n", "p.yaml")


# ---------------------------------------------------------------------------------------------- decision


def _check(verified: bool, kind: SignatureKind = SignatureKind.COSIGN_KEYED, reason: str = "why") -> SignatureCheck:
    return SignatureCheck(kind, SignatureFormat.LEGACY_TAG, SUBJECT, verified, reason, "sha256-x.sig")


@pytest.fixture
def required(key_file: tuple[ec.EllipticCurvePrivateKey, Path]) -> TrustPolicy:
    _, path = key_file
    return TrustPolicy(required=True, grace_seconds=600, keys=(load_public_key(path.read_bytes(), "release.pub"),))


def test_unsigned_within_grace_changes_nothing_and_says_until_when(required: TrustPolicy) -> None:
    now = PUSHED + timedelta(seconds=599)
    status = judge_signatures(required, [], pushed_at=PUSHED, now=now, scope="prod/**")
    assert status.state is SignatureState.GRACE and status.floor is None
    assert status.grace_until == PUSHED + timedelta(seconds=600)
    decision = decide([], "prod/app", signatures=status)
    assert decision.action is Action.ALLOW
    assert decision.explanation == (
        "clean: no findings; unsigned (none found), within the grace period until 2026-01-01T12:10:00Z"
    )


def test_unsigned_after_grace_is_quarantined_with_the_reason(required: TrustPolicy) -> None:
    status = judge_signatures(
        required, [_check(False, reason="bad")], pushed_at=PUSHED, now=PUSHED + timedelta(seconds=600)
    )
    assert status.state is SignatureState.UNSIGNED and status.floor is Action.QUARANTINE
    decision = decide([], "prod/app", signatures=status)
    assert decision.action is Action.QUARANTINE and decision.signatures is status
    assert decision.explanation == (
        "clean: no findings; unsigned (1 checked, none verified): policy by default requires a signature by"
        " key release.pub (unsigned: quarantine)"
    )
    warn = judge_signatures(
        TrustPolicy(required=True, unsigned=Action.WARN, keys=required.keys), [], pushed_at=PUSHED, now=PUSHED
    )
    assert warn.state is SignatureState.GRACE  # grace_seconds defaults to 600


def test_policy_unsigned_never_softens_the_verdicts_action(required: TrustPolicy) -> None:
    from tests.unit.test_policy import OPEN_MINER

    lenient = TrustPolicy(required=True, unsigned=Action.ALLOW, grace_seconds=0, keys=required.keys)
    status = judge_signatures(lenient, [], pushed_at=PUSHED, now=PUSHED)
    assert status.floor is Action.ALLOW
    assert decide([OPEN_MINER], "a/b", signatures=status).action is Action.WARN


def test_verified_signature_satisfies_and_attestations_do_not(required: TrustPolicy) -> None:
    late = PUSHED + timedelta(days=1)
    signed = judge_signatures(
        required, [_check(False), _check(True, reason="signed by key release.pub")], pushed_at=PUSHED, now=late
    )
    assert signed.state is SignatureState.VERIFIED and signed.floor is None
    assert decide([], "a/b", signatures=signed).explanation == (
        "clean: no findings; signature verified: signed by key release.pub"
    )
    attested = judge_signatures(required, [_check(True, SignatureKind.ATTESTATION_KEYED)], pushed_at=PUSHED, now=late)
    assert attested.state is SignatureState.UNSIGNED and attested.floor is Action.QUARANTINE


def test_not_checked_and_not_configured(required: TrustPolicy) -> None:
    local = judge_signatures(required, None, pushed_at=PUSHED, now=PUSHED + timedelta(days=1))
    assert local.state is SignatureState.NOT_CHECKED and local.floor is None
    assert (
        decide([], "a/b", signatures=local).explanation == "clean: no findings; signatures not checked (local source)"
    )
    none = judge_signatures(TrustPolicy(), [], pushed_at=PUSHED, now=PUSHED)
    assert none.state is SignatureState.NOT_CONFIGURED
    assert decide([], "a/b", signatures=none).explanation == "clean: no findings"
    optional = judge_signatures(TrustPolicy(keys=required.keys), [], pushed_at=PUSHED, now=PUSHED + timedelta(days=1))
    assert optional.state is SignatureState.UNSIGNED and optional.floor is None


# ---------------------------------------------------------------------------------------------- verification


def _keyed_layer(key: ec.EllipticCurvePrivateKey, payload: bytes) -> LegacyLayer:
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    return LegacyLayer(
        tag="sha256-ab.sig",
        manifest_digest=sha256_digest(b"m"),
        index=0,
        media_type=SIMPLE_SIGNING_MEDIA_TYPE,
        digest=sha256_digest(payload),
        annotations={"dev.cosignproject.cosign/signature": signature},
        blob=payload,
    )


def test_keyed_signature_good_wrong_key_and_other_digest(
    required: TrustPolicy, key_file: tuple[ec.EllipticCurvePrivateKey, Path]
) -> None:
    key, _ = key_file
    good = _keyed_layer(key, simple_signing_payload(SUBJECT))
    stranger = _keyed_layer(ec.generate_private_key(ec.SECP256R1()), simple_signing_payload(SUBJECT))
    elsewhere = _keyed_layer(key, simple_signing_payload(OTHER))
    report = verify_discovered(Discovered(SUBJECT, signatures=(good, stranger, elsewhere)), required)
    assert [c.verified for c in report.checks] == [True, False, False]
    assert report.satisfied and report.verified == (report.checks[0],)
    assert "does not verify with any of the 1 configured keys" in report.checks[1].reason
    assert report.checks[2].reason.startswith(f"payload is for {OTHER}")
    assert not verify_discovered(Discovered(SUBJECT, signatures=(stranger,)), required).satisfied


def test_keyless_legacy_and_bundle_against_identities(private_sigstore: PrivateSigstore) -> None:
    legacy = private_sigstore.legacy_signature(simple_signing_payload(SUBJECT))
    layer = LegacyLayer(
        "sha256-ab.sig",
        sha256_digest(b"m"),
        0,
        SIMPLE_SIGNING_MEDIA_TYPE,
        sha256_digest(legacy.payload),
        legacy.annotations,
        legacy.payload,
    )
    bundle = BundleReferrer(
        sha256_digest(b"r"),
        "tag sha256-ab",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        sha256_digest(b"b"),
        {},
        private_sigstore.sign_image_bundle(SUBJECT),
    )
    found = Discovered(SUBJECT, signatures=(layer,), bundles=(bundle,))
    root = private_sigstore.trusted_root_path
    right = TrustPolicy(
        required=True,
        identities=(
            IdentityPolicy(issuer=DEFAULT_ISSUER, subject="nobody@example.com"),
            IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY),
        ),
        trusted_root=root,
    )
    report = verify_discovered(found, right)
    assert [c.verified for c in report.checks] == [True, True], [c.reason for c in report.checks]
    assert {c.identity for c in report.checks} == {DEFAULT_IDENTITY}
    assert report.checks[0].log_index is not None and report.checks[0].integrated_time is not None

    wrong = TrustPolicy(
        required=True, identities=(IdentityPolicy(issuer=DEFAULT_ISSUER, subject="x@y.z"),), trusted_root=root
    )
    report = verify_discovered(found, wrong)
    assert not report.satisfied
    assert report.checks[0].reason == f"signer not allowed: identity {DEFAULT_IDENTITY} does not match subject x@y.z"
    assert report.checks[1].reason.startswith("signer not allowed: identity dev@example.com does not match")

    issuer = TrustPolicy(
        required=True, identities=(IdentityPolicy(issuer="https://other", subject=DEFAULT_IDENTITY),), trusted_root=root
    )
    assert [c.verified for c in verify_discovered(found, issuer).checks] == [False, False]

    keys_only = TrustPolicy(
        required=True, keys=(load_public_key(_pem(ec.generate_private_key(ec.SECP256R1()))),), trusted_root=root
    )
    report = verify_discovered(found, keys_only)
    assert [c.verified for c in report.checks] == [False, False]
    assert report.checks[0].reason.startswith("no keyless identities are configured (signed by dev@example.com")
