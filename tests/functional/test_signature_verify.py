"""`tollgate verify` and the pipeline's trust policy against the real registry, with keyed and keyless signatures."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rq.registry import ScheduledJobRegistry

from tests.functional.test_signature_discovery import REPO, push_bundle_referrer, push_fallback_index, push_legacy
from tests.support.oci import tar_layer, write_image_layout
from tests.support.registry import RunningRegistry
from tests.support.sigstore import (
    COSIGN_SIGN_PREDICATE,
    DEFAULT_IDENTITY,
    DEFAULT_ISSUER,
    SIMPLE_SIGNING_MEDIA_TYPE,
    PrivateSigstore,
    simple_signing_payload,
)
from workers.domain import Action, Digest, SignatureState, parse_digest
from workers.pipeline import Vetter, load_scanners
from workers.policy import load_policy
from workers.queue import RESCAN_QUEUE, recheck_job_id
from workers.registry import RegistryClient
from workers.signatures.verify import verify_image
from workers.sources import RegistrySource

pytestmark = pytest.mark.functional

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, retries=1, backoff=0.01) as made:
        yield made


def _push_image(registry: RunningRegistry, path: Path, tag: str, content: bytes) -> Digest:
    digest = write_image_layout(path, [tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho " + content + b"\n"})])
    registry.push_layout(path, REPO, tag)
    return parse_digest(digest)


def _key(tmp_path: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / f"{name}.pub"
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, path


def _sign_keyed(client: RegistryClient, subject: Digest, key: ec.EllipticCurvePrivateKey, names: Digest) -> None:
    """What ``cosign sign --key`` (legacy tags) pushes for ``subject``: a simple-signing payload naming ``names``."""
    payload = simple_signing_payload(names, f"127.0.0.1/{REPO}")
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    tag = "sha256-" + subject.removeprefix("sha256:") + ".sig"
    push_legacy(client, tag, [(SIMPLE_SIGNING_MEDIA_TYPE, payload, {"dev.cosignproject.cosign/signature": signature})])


def _verify(registry: RunningRegistry, ref: str, *flags: str | Path) -> tuple[int, dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    environ.update(
        TOLLGATE_REGISTRY_URL=registry.url, TOLLGATE_REGISTRY_USE_DOCKER_CONFIG="false", TOLLGATE_REGISTRY_TIMEOUT="5"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "verify", ref, "--format", "json", *map(str, flags)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_verify_keyed_good_key_wrong_key_and_payload_for_another_digest(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = _push_image(registry, tmp_path / "app", "1.0", b"one")
    other = _push_image(registry, tmp_path / "other", "2.0", b"two")
    release, release_pub = _key(tmp_path, "release")
    _, stranger_pub = _key(tmp_path, "stranger")
    _sign_keyed(client, image, release, image)
    _sign_keyed(client, other, release, image)  # a valid signature of the first image, copied onto the second

    code, out = _verify(registry, f"{registry.host}/{REPO}:1.0", "--key", release_pub)
    assert code == 0, out
    assert out["digest"] == image and out["verified"] is True
    (check,) = out["checks"]
    assert check["kind"] == "cosign-keyed" and check["verified"] is True and check["subject"] == image
    assert check["reason"] == "signed by key release.pub (ecdsa-p256)"

    code, out = _verify(registry, f"{REPO}@{image}", "--key", stranger_pub)
    assert code == 1 and out["verified"] is False
    assert "does not verify with any of the 1 configured keys" in out["checks"][0]["reason"]

    code, out = _verify(registry, f"{REPO}:2.0", "--key", release_pub, "--key", stranger_pub)
    assert code == 1
    assert out["checks"][0]["reason"].startswith(f"payload is for {image}")

    code, out = _verify(registry, f"{REPO}:2.0", "--key", tmp_path / "missing.pub")
    assert code == 2 and out["status"] == "error" and "missing.pub" in out["error"]
    code, out = _verify(registry, f"{REPO}:2.0")
    assert code == 2 and "nothing to verify against" in out["error"]


def test_verify_keyless_bundle_identity_and_issuer(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, private_sigstore: PrivateSigstore
) -> None:
    image = _push_image(registry, tmp_path / "app", "1.0", b"one")
    signed = push_bundle_referrer(client, image, private_sigstore.sign_image_bundle(image), COSIGN_SIGN_PREDICATE)
    push_fallback_index(client, image, [signed])
    root = ("--trusted-root", private_sigstore.trusted_root_path)
    ref = f"{REPO}:1.0"

    code, out = _verify(
        registry, ref, "--certificate-identity", DEFAULT_IDENTITY, "--certificate-oidc-issuer", DEFAULT_ISSUER, *root
    )
    assert code == 0, out
    (check,) = out["checks"]
    assert check["kind"] == "cosign-keyless" and check["format"] == "bundle-referrer"
    assert check["identity"] == DEFAULT_IDENTITY and check["issuer"] == DEFAULT_ISSUER
    assert check["source"] == signed["digest"] and isinstance(check["log_index"], int) and check["time"]

    code, out = _verify(
        registry,
        ref,
        "--certificate-identity-regexp",
        r".*@example\.com",
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
        *root,
    )
    assert code == 0, out

    code, out = _verify(
        registry, ref, "--certificate-identity", "evil@example.com", "--certificate-oidc-issuer", DEFAULT_ISSUER, *root
    )
    assert code == 1 and out["checks"][0]["verified"] is False
    assert out["checks"][0]["reason"].startswith("signer not allowed: identity dev@example.com does not match")

    code, out = _verify(
        registry, ref, "--certificate-identity", DEFAULT_IDENTITY, "--certificate-oidc-issuer", "https://other", *root
    )
    assert code == 1 and "does not match issuer https://other" in out["checks"][0]["reason"]

    # Against the production root (the default) our private instance's bundle does not chain.
    code, out = _verify(
        registry, ref, "--certificate-identity", DEFAULT_IDENTITY, "--certificate-oidc-issuer", DEFAULT_ISSUER
    )
    assert code == 1 and out["checks"][0]["reason"].startswith("certificate does not chain")

    code, out = _verify(registry, ref, "--certificate-identity", DEFAULT_IDENTITY)  # no issuer: refused
    assert code == 2 and "needs an issuer" in out["error"]


def test_verify_unreachable_registry_is_an_error(tmp_path: Path, registry: RunningRegistry) -> None:
    _, pub = _key(tmp_path, "k")
    code, out = _verify(registry, f"127.0.0.1:9/{REPO}:1.0", "--key", pub)
    assert code == 2 and out["status"] == "error"


def test_pipeline_quarantines_unsigned_after_grace_and_allows_signed(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    release, _ = _key(tmp_path, "release")  # written as release.pub beside the policy file
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\nrepositories:\n  - match: team/*\n"
        "    signatures: {required: true, unsigned: quarantine, grace_seconds: 600, keys: [release.pub]}\n"
    )
    policy = load_policy(policy_file)
    unsigned = _push_image(registry, tmp_path / "unsigned", "unsigned", b"unsigned")
    signed = _push_image(registry, tmp_path / "signed", "signed", b"signed")
    _sign_keyed(client, signed, release, signed)
    pushed = datetime.now(UTC) - timedelta(seconds=601)
    scanners = load_scanners(RULES)

    def vet(digest: Digest, now: datetime) -> Any:
        vetter = Vetter(scanners, policy=policy, signature_verifier=verify_image, clock=lambda: now)
        return vetter.vet(RegistrySource(client, REPO), digest, pushed_at=pushed)

    early = vet(unsigned, pushed + timedelta(seconds=30))
    assert early.verdict.value == "clean" and early.action is Action.ALLOW
    assert early.signature_status.state is SignatureState.GRACE
    assert early.signature_status.grace_until == pushed + timedelta(seconds=600)
    assert "unsigned (none found), within the grace period until" in early.explanation

    late = vet(unsigned, pushed + timedelta(seconds=600))
    assert late.action is Action.QUARANTINE and late.signature_status.state is SignatureState.UNSIGNED
    assert "policy for team/* requires a signature by key release.pub (unsigned: quarantine)" in late.explanation

    good = vet(signed, pushed + timedelta(seconds=600))
    assert good.action is Action.ALLOW and good.signature_status.state is SignatureState.VERIFIED
    assert [c.verified for c in good.signatures] == [True]
    assert good.explanation == "clean: no findings; signature verified: signed by key release.pub (ecdsa-p256)"


def test_scan_job_then_signature_pushed_later_is_reverified(
    registry: RunningRegistry,
    client: RegistryClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_conn: redis.Redis,
) -> None:
    from workers import jobs
    from workers.store import Store

    release, _ = _key(tmp_path, "release")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\ndefault:\n  signatures: {required: true, grace_seconds: 600, keys: [release.pub]}\n"
    )
    database_url = f"sqlite:///{tmp_path / 'tollgate.db'}"
    for key in list(os.environ):
        if key.startswith("TOLLGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TOLLGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(policy_file))
    monkeypatch.setenv("TOLLGATE_REGISTRY_URL", registry.url)
    monkeypatch.setenv("TOLLGATE_REGISTRY_USE_DOCKER_CONFIG", "false")
    monkeypatch.setenv("TOLLGATE_REDIS_URL", redis_url)
    store = Store(database_url)
    store.migrate()
    monkeypatch.setattr(jobs, "_store", lambda: store)
    image = _push_image(registry, tmp_path / "app", "1.0", b"one")
    store.record_push(REPO, image, tag="1.0", media_type=None)

    outcome = jobs.scan_image(REPO, image)  # pushed just now: unsigned, within the grace period
    assert outcome["action"] == "allow" and outcome["signatures"]["state"] == "grace"
    record = store.get_record(REPO, image)
    assert record is not None
    deadline = record.first_seen + timedelta(seconds=600)
    assert datetime.fromisoformat(outcome["signatures"]["grace_until"]) == deadline
    # The job scheduled the look at the end of the grace period on the rescan queue.
    scheduled = ScheduledJobRegistry(RESCAN_QUEUE, connection=redis_conn).get_job_ids()
    assert scheduled == [recheck_job_id(REPO, image, deadline)]

    after = jobs.reverify_image(REPO, image, now=deadline)  # the grace scheduler's call: still unsigned
    assert after["action"] == "quarantine" and after["signatures"]["state"] == "unsigned"
    record = store.get_record(REPO, image)
    assert record is not None and record.action is Action.QUARANTINE and record.signatures == ()

    _sign_keyed(client, image, release, image)  # the .sig push's re-evaluation: released
    signed = jobs.reverify_image(REPO, image, now=deadline)
    assert signed["action"] == "allow" and signed["signatures"]["state"] == "verified"
    record = store.get_record(REPO, image)
    assert record is not None and record.action is Action.ALLOW
    assert [s["verified"] for s in record.signatures] == [True] and record.verdict is not None
    assert jobs.reverify_image(REPO, _push_image(registry, tmp_path / "b", "b", b"b"))["status"] == "skipped"
    store.close()
