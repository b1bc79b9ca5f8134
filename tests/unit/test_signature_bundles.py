"""Unit tests of Sigstore bundle verification against the private test Sigstore instance (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.sigstore import (
    COSIGN_SIGN_PREDICATE,
    DEFAULT_IDENTITY,
    DEFAULT_ISSUER,
    STATEMENT_V01,
    PrivateSigstore,
    in_toto_statement,
    simple_signing_payload,
    tamper_dsse_payload,
)
from workers.domain import sha256_digest
from workers.errors import ConfigError, SignatureError
from workers.signatures.bundles import BundleVerifier, load_trusted_root, simple_signing_problem
from workers.signatures.identity import IdentityPolicy, certificate_identity
from workers.signatures.intoto import bind_statement, parse_statement
from workers.signatures.model import SignatureFormat, SignatureKind

DIGEST = sha256_digest(b"the image manifest")
OTHER = sha256_digest(b"another image manifest")
SLSA = "https://slsa.dev/provenance/v1"
WORKFLOW = "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"
POLICY = IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_IDENTITY)


@pytest.fixture(scope="module")
def verifier(private_sigstore: PrivateSigstore) -> BundleVerifier:
    return BundleVerifier.from_trusted_root(private_sigstore.trusted_root_path)


def _check_simple(
    verifier: BundleVerifier, sigstore: PrivateSigstore, policy: IdentityPolicy = POLICY, **issue: str
) -> tuple[bool, str]:
    payload = simple_signing_payload(DIGEST)
    bundle = sigstore.simple_signing_bundle(payload, leaf=sigstore.issue(**issue))
    check = verifier.verify(bundle, DIGEST, policy, source="test", payload=payload)
    return check.verified, check.reason


def test_good_simple_signing_bundle(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    payload = simple_signing_payload(DIGEST)
    bundle = private_sigstore.simple_signing_bundle(payload)
    check = verifier.verify(bundle, DIGEST, POLICY, source="sha256:referrer", payload=payload)
    assert check.verified, check.reason
    assert check.kind == SignatureKind.COSIGN_KEYLESS and check.format == SignatureFormat.BUNDLE_REFERRER
    assert check.subject == DIGEST and check.source == "sha256:referrer"
    assert (check.identity, check.issuer) == (DEFAULT_IDENTITY, DEFAULT_ISSUER)
    assert check.log_index == int(json.loads(bundle)["verificationMaterial"]["tlogEntries"][0]["logIndex"])
    assert check.integrated_time is not None and check.integrated_time.tzinfo is not None
    assert "simple-signing payload signed by dev@example.com" in check.reason
    assert check.to_json()["time"] == check.integrated_time.isoformat()


def test_good_dsse_cosign_v3_signature(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    check = verifier.verify(private_sigstore.sign_image_bundle(DIGEST), DIGEST, POLICY, source="r")
    assert check.verified, check.reason
    assert check.kind == SignatureKind.COSIGN_KEYLESS
    assert check.predicate_type == COSIGN_SIGN_PREDICATE and check.statement is None
    assert check.identity == DEFAULT_IDENTITY and isinstance(check.log_index, int)


def test_attestation_with_other_predicate(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    bundle = private_sigstore.attest_bundle(DIGEST, SLSA, {"buildDefinition": {"buildType": "x"}})
    check = verifier.verify(bundle, DIGEST, POLICY, source="r")
    assert check.verified, check.reason
    assert check.kind == SignatureKind.ATTESTATION_KEYLESS and check.predicate_type == SLSA
    assert check.statement is not None and check.statement["predicate"]["buildDefinition"]["buildType"] == "x"
    old = private_sigstore.attest_bundle(DIGEST, SLSA, {}, statement_type=STATEMENT_V01)
    assert verifier.verify(old, DIGEST, POLICY, source="r").verified  # v0.1 statements are parsed by us


def test_wrong_identity_and_issuer(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    ok, reason = _check_simple(verifier, private_sigstore, identity="evil@example.com")
    assert not ok and reason == "signer not allowed: identity evil@example.com does not match subject dev@example.com"
    ok, reason = _check_simple(verifier, private_sigstore, issuer="https://evil.example")
    assert not ok
    assert reason == (
        "signer not allowed: identity dev@example.com does not match issuer https://issuer.example.com"
        " (certificate issuer https://evil.example)"
    )


def test_rejected_check_carries_no_signer_fields(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    leaf = private_sigstore.issue("evil@example.com")
    check = verifier.verify(private_sigstore.sign_image_bundle(DIGEST, leaf=leaf), DIGEST, POLICY, source="r")
    assert not check.verified
    assert (check.identity, check.issuer, check.log_index, check.integrated_time) == (None, None, None, None)


def test_identity_regexp_is_anchored(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    policy = IdentityPolicy(issuer=GITHUB, subject_regexp=r"https://github\.com/org/app/\.github/workflows/.*")
    assert _check_simple(verifier, private_sigstore, policy, identity=WORKFLOW, issuer=GITHUB)[0]
    evil = "https://github.com/evil/x?https://github.com/org/app/.github/workflows/a"
    ok, reason = _check_simple(verifier, private_sigstore, policy, identity=evil, issuer=GITHUB)
    assert not ok and "does not match subject regexp" in reason  # re.search would have accepted this one
    ok, _ = _check_simple(verifier, private_sigstore, policy, identity="https://github.com/org/other/x", issuer=GITHUB)
    assert not ok


def test_workflow_repository_and_ref(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    policy = IdentityPolicy(
        issuer=GITHUB, subject=WORKFLOW, workflow_repository="org/app", workflow_ref="refs/heads/main"
    )
    leaf_args = {"identity": WORKFLOW, "issuer": GITHUB, "workflow_repository": "org/app"}
    payload = simple_signing_payload(DIGEST)
    leaf = private_sigstore.issue(**leaf_args, workflow_ref="refs/heads/main")
    check = verifier.verify(
        private_sigstore.simple_signing_bundle(payload, leaf=leaf), DIGEST, policy, source="r", payload=payload
    )
    assert check.verified, check.reason
    assert (check.workflow_repository, check.workflow_ref) == ("org/app", "refs/heads/main")
    ok, reason = _check_simple(verifier, private_sigstore, policy, **leaf_args, workflow_ref="refs/heads/dev")
    assert not ok and "does not match workflow ref refs/heads/main (certificate has refs/heads/dev)" in reason
    ok, reason = _check_simple(verifier, private_sigstore, policy, identity=WORKFLOW, issuer=GITHUB)
    assert not ok and "does not match workflow repository org/app (certificate has None)" in reason


def test_payload_for_another_digest(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    payload = simple_signing_payload(OTHER)
    bundle = private_sigstore.simple_signing_bundle(payload)
    check = verifier.verify(bundle, DIGEST, POLICY, source="r", payload=payload)
    assert not check.verified and check.reason == f"payload is for {OTHER}, not {DIGEST}"
    check = verifier.verify(private_sigstore.sign_image_bundle(OTHER), DIGEST, POLICY, source="r")
    assert not check.verified and check.reason == f"statement is for {OTHER}, not {DIGEST}"


def test_tampered_payloads(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    payload = simple_signing_payload(DIGEST)
    bundle = private_sigstore.simple_signing_bundle(payload)
    check = verifier.verify(bundle, DIGEST, POLICY, source="r", payload=payload.replace(b"team/app", b"team/evl"))
    assert not check.verified and check.reason.startswith("verification failed: Bundle message digest mismatch")
    forged = tamper_dsse_payload(private_sigstore.sign_image_bundle(OTHER), in_toto_statement(DIGEST))
    check = verifier.verify(forged, DIGEST, POLICY, source="r")
    assert not check.verified and check.reason.startswith("verification failed")


def test_expired_certificate_at_signing_time(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    leaf = private_sigstore.issue(expired=True)
    check = verifier.verify(private_sigstore.sign_image_bundle(DIGEST, leaf=leaf), DIGEST, POLICY, source="r")
    assert not check.verified
    assert check.reason.startswith("certificate does not chain to the trusted root at signing time")
    assert "not valid at validation time" in check.reason


def test_bundle_from_untrusted_root(
    verifier: BundleVerifier, private_sigstore: PrivateSigstore, untrusted_sigstore: PrivateSigstore
) -> None:
    check = verifier.verify(untrusted_sigstore.sign_image_bundle(DIGEST), DIGEST, POLICY, source="r")
    assert not check.verified
    assert check.reason.startswith("certificate does not chain to the trusted root at signing time")
    assert check.kind == SignatureKind.COSIGN_KEYLESS  # classified from the (unverified) statement, for the record
    own = BundleVerifier.from_trusted_root(untrusted_sigstore.trusted_root_path)
    assert own.verify(untrusted_sigstore.sign_image_bundle(DIGEST), DIGEST, POLICY, source="r").verified
    assert not own.verify(private_sigstore.sign_image_bundle(DIGEST), DIGEST, POLICY, source="r").verified


def test_certificate_without_sct(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    leaf = private_sigstore.issue(sct=False)
    check = verifier.verify(private_sigstore.sign_image_bundle(DIGEST, leaf=leaf), DIGEST, POLICY, source="r")
    assert not check.verified and "SCT" in check.reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"not json", "bundle is not JSON"),
        (lambda b: b"[1]", "bundle is not a JSON object"),
        (lambda b: json.dumps({**json.loads(b), "mediaType": "text/plain"}).encode(), "not a Sigstore bundle"),
        (lambda b: json.dumps({**json.loads(b), "verificationMaterial": {}}).encode(), "bundle "),
        (lambda b: json.dumps(_without_proof(json.loads(b))).encode(), "bundle is invalid"),
    ],
)
def test_malformed_bundles(
    verifier: BundleVerifier, private_sigstore: PrivateSigstore, mutate: object, reason: str
) -> None:
    assert callable(mutate)
    check = verifier.verify(mutate(private_sigstore.sign_image_bundle(DIGEST)), DIGEST, POLICY, source="r")
    assert not check.verified and check.reason.startswith(reason), check.reason


def _without_proof(document: dict[str, object]) -> dict[str, object]:
    material = document["verificationMaterial"]
    assert isinstance(material, dict)
    del material["tlogEntries"][0]["inclusionProof"]
    return document


def test_message_bundle_needs_its_payload(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    bundle = private_sigstore.simple_signing_bundle(simple_signing_payload(DIGEST))
    check = verifier.verify(bundle, DIGEST, POLICY, source="r")
    assert not check.verified and check.reason == "message-signature bundle without its signed payload"


def test_dsse_payload_type_must_be_in_toto(verifier: BundleVerifier, private_sigstore: PrivateSigstore) -> None:
    bundle = private_sigstore.dsse_bundle(in_toto_statement(DIGEST), payload_type="text/plain")
    check = verifier.verify(bundle, DIGEST, POLICY, source="r")
    assert not check.verified and check.reason == "DSSE payload type is text/plain, not application/vnd.in-toto+json"


def test_statement_and_payload_binding() -> None:
    hex_value = DIGEST.removeprefix("sha256:")
    good = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "p",
        "subject": [{"digest": {"sha256": hex_value}}],
    }
    assert parse_statement(json.dumps(good).encode()) == good
    assert _statement_problem(json.dumps(good).encode()) is None
    assert (
        _statement_problem(json.dumps({**good, "_type": "x"}).encode())
        == "statement _type is 'x', not an in-toto Statement v0.1 or v1"
    )
    assert _statement_problem(json.dumps({**good, "subject": []}).encode()) == "statement has no subject list"
    no_sha = {**good, "subject": [{"digest": {"sha512": "00"}}]}
    assert _statement_problem(json.dumps(no_sha).encode()) == f"statement is for sha512:00, not {DIGEST}"
    assert _statement_problem(b"\xff") == "in-toto statement is not UTF-8: invalid start byte at byte 0"
    spec_case = b'{"critical":{"identity":{},"image":{"Docker-manifest-digest":"%s"},"Type":"%s"}}' % (
        DIGEST.encode(),
        b"cosign container image signature",
    )
    assert simple_signing_problem(spec_case, DIGEST) is None
    wrong_type = simple_signing_payload(DIGEST, signature_type="something else")
    assert simple_signing_problem(wrong_type, DIGEST) == (
        "payload type is 'something else', not 'cosign container image signature'"
    )
    assert simple_signing_problem(b"{}", DIGEST) == "simple-signing payload has no 'critical' object"


def _statement_problem(payload: bytes) -> str | None:
    """Why ``payload`` is not an in-toto Statement about DIGEST, as the bundle verifier reports it; None if it is."""
    try:
        bind_statement(parse_statement(payload), DIGEST)
    except SignatureError as exc:
        return str(exc)
    return None


def test_certificate_identity_fields(private_sigstore: PrivateSigstore) -> None:
    leaf = private_sigstore.issue(WORKFLOW, GITHUB, workflow_repository="org/app", workflow_ref="refs/tags/v1")
    found = certificate_identity(leaf.certificate)
    assert found.subject == WORKFLOW and found.issuer == GITHUB
    assert (found.workflow_repository, found.workflow_ref) == ("org/app", "refs/tags/v1")


def test_signer_policy_is_validated() -> None:
    with pytest.raises(ConfigError, match="issuer"):
        IdentityPolicy(issuer="", subject="a@b")
    with pytest.raises(ConfigError, match="exactly one"):
        IdentityPolicy(issuer=GITHUB)
    with pytest.raises(ConfigError, match="exactly one"):
        IdentityPolicy(issuer=GITHUB, subject="a@b", subject_regexp=".*")
    with pytest.raises(ConfigError, match="does not compile"):
        IdentityPolicy(issuer=GITHUB, subject_regexp="(")
    assert IdentityPolicy(issuer=GITHUB, subject_regexp="a.*").describe() == f"/a.*/ from {GITHUB}"


def test_trusted_roots_load_offline(tmp_path: Path, private_sigstore: PrivateSigstore) -> None:
    production = BundleVerifier.from_trusted_root(None)  # the root shipped in the sigstore package, no TUF cache
    assert production.name == "the Sigstore production root"
    check = production.verify(private_sigstore.sign_image_bundle(DIGEST), DIGEST, POLICY, source="r")
    assert not check.verified
    with pytest.raises(ConfigError, match="No such file"):
        load_trusted_root(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"mediaType": "nope"}')
    with pytest.raises(ConfigError, match="is not a Sigstore trusted root"):
        load_trusted_root(tmp_path / "bad.json")
