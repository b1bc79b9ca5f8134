"""Provenance and the signed verdict against a real registry: push → vet → referrers, fallback index, .att, verify."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import buildkit
from tests.support.oci import tar_layer, write_image_layout
from tests.support.stack import Stack
from workers.cli import main
from workers.domain import MANIFEST_ACCEPT, parse_digest, sha256_digest
from workers.jobs import scan_image
from workers.registry import RegistryClient

pytestmark = pytest.mark.functional

REPO = "team/app"
VERDICT_TYPE = "application/vnd.tollgate.verdict.v1+json"
PROVENANCE_TYPE = "application/vnd.tollgate.provenance.v1+json"
VSA = "https://slsa.dev/verification_summary/v1"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _vet(stack: Stack, tag: str) -> dict[str, Any]:
    stack.wait_queued(REPO, tag)
    stack.run_worker()
    response = stack.record(REPO, f":{tag}")
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    assert record["status"] == "done", record
    return record


def _manifest(stack: Stack, reference: str) -> httpx.Response:
    return httpx.get(
        f"{stack.registry.url}/v2/{REPO}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10
    )


def _json_manifest(stack: Stack, reference: str) -> dict[str, Any]:
    response = _manifest(stack, reference)
    assert response.status_code == 200, (reference, response.text)
    document: dict[str, Any] = response.json()
    return document


def _blob(stack: Stack, digest: str) -> bytes:
    response = httpx.get(f"{stack.registry.url}/v2/{REPO}/blobs/{digest}", timeout=10, follow_redirects=True)
    assert response.status_code == 200, response.text
    assert sha256_digest(response.content) == digest
    return response.content


def _fallback_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1]


def _entries(stack: Stack, digest: str, artifact_type: str) -> list[dict[str, Any]]:
    index = _json_manifest(stack, _fallback_tag(digest))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return [e for e in index["manifests"] if e.get("artifactType") == artifact_type]


def _public_key(stack: Stack) -> ec.EllipticCurvePublicKey:
    response = httpx.get(f"{stack.app.url}/api/v1/keys", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    key = serialization.load_pem_public_key(response.content)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    return key


def _pae(payload_type: str, payload: bytes) -> bytes:
    # Written out here from the DSSE spec, independently of Tollgate's own implementation.
    kind = payload_type.encode()
    return b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" " + str(len(payload)).encode() + b" " + payload


def _verify_envelope(envelope: bytes, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Verify a DSSE envelope with ``cryptography`` only; InvalidSignature when it does not verify."""
    document = json.loads(envelope)
    payload = base64.b64decode(document["payload"])
    (signature,) = document["signatures"]
    key.verify(base64.b64decode(signature["sig"]), _pae(document["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    statement: dict[str, Any] = json.loads(payload)
    return statement


def _verdict_envelope(stack: Stack, digest: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The one verdict entry of the fallback index, its referrer manifest and the envelope blob."""
    (entry,) = _entries(stack, digest, VERDICT_TYPE)
    manifest = _json_manifest(stack, entry["digest"])
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    return entry, manifest, _blob(stack, layer["digest"])


def test_vetting_publishes_provenance_and_a_signed_verdict_that_verifies_with_the_served_key(
    stack: Stack, tmp_path: Path
) -> None:
    index_digest, platform_digest = buildkit.write_buildkit_layout(tmp_path / "image", buildkit.provenance_v1)
    stack.push(tmp_path / "image", REPO, "v1")
    record = _vet(stack, "v1")
    assert record["digest"] == index_digest

    # The record (API) has the provenance.
    provenance = record["provenance"]
    assert provenance["source"]["commit"] == buildkit.COMMIT
    assert provenance["dockerfile"]["path"] == buildkit.DOCKERFILE_PATH
    assert provenance["dockerfile"]["sha256"] == buildkit.dockerfile_sha256()
    assert provenance["dockerfile"]["matches_history"] is True
    assert provenance["platforms"][0]["manifest"] == platform_digest
    publication = provenance["publication"]
    assert publication["status"] == "published", publication

    # The referrers exist in the real registry, with subject, and are listed in the fallback index.
    entry, manifest, envelope = _verdict_envelope(stack, index_digest)
    assert publication["referrers"]["verdict"] == entry["digest"]
    assert manifest["artifactType"] == VERDICT_TYPE
    assert manifest["subject"]["digest"] == index_digest
    assert manifest["subject"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (provenance_entry,) = _entries(stack, index_digest, PROVENANCE_TYPE)
    assert _json_manifest(stack, provenance_entry["digest"])["subject"]["digest"] == index_digest

    # The DSSE signature verifies with the served key, independently of Tollgate's verifier.
    key = _public_key(stack)
    statement = _verify_envelope(envelope, key)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == VSA
    assert statement["subject"][0]["digest"] == {"sha256": index_digest.split(":", 1)[1]}
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["verifier"]["id"]
    assert predicate["resourceUri"].endswith(f"/{REPO}@{index_digest}")
    assert len(predicate["policy"]["digest"]["sha256"]) == 64
    assert predicate["tollgate"]["verdict"] == record["verdict"]
    assert predicate["tollgate"]["action"] == record["action"]
    assert predicate["tollgate"]["ruleset"]["version"] == record["ruleset"]
    assert predicate["tollgate"]["provenance"]["source"]["commit"] == buildkit.COMMIT
    assert [i["digest"] for i in predicate["inputAttestations"]] == [
        {"sha256": a["digest"]["sha256"]} for a in provenance["inputs"]
    ]
    provenance_statement = _verify_envelope(
        _blob(stack, _json_manifest(stack, provenance_entry["digest"])["layers"][0]["digest"]), key
    )
    assert provenance_statement["predicate"]["record"]["source"]["commit"] == buildkit.COMMIT

    # A tampered envelope fails.
    document = json.loads(envelope)
    forged = json.loads(base64.b64decode(document["payload"]))
    forged["predicate"]["verificationResult"] = "FAILED"
    document["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    with pytest.raises(InvalidSignature):
        _verify_envelope(json.dumps(document).encode(), key)

    # cosign's legacy form: the same verdict as a layer of sha256-<hex>.att.
    att = _json_manifest(stack, _fallback_tag(index_digest) + ".att")
    (layer,) = att["layers"]
    assert layer["annotations"]["predicateType"] == VSA
    assert layer["annotations"]["dev.cosignproject.cosign/signature"] == ""
    assert _verify_envelope(_blob(stack, layer["digest"]), key)["predicateType"] == VSA
    config = json.loads(_blob(stack, att["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]

    # Tollgate's own pushes notified the webhook; working them off publishes nothing new (no loop).
    before = _json_manifest(stack, _fallback_tag(index_digest))
    stack.run_worker()
    stack.run_worker()
    assert _json_manifest(stack, _fallback_tag(index_digest)) == before
    after = stack.record(REPO, ":v1").json()["provenance"]["publication"]
    assert after["status"] == "published"
    assert after["referrers"] == publication["referrers"]
    assert after["fingerprint"] == publication["fingerprint"]


def test_revetting_replaces_the_verdict_and_keeps_other_referrers(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_digest, _ = buildkit.write_buildkit_layout(tmp_path / "image", buildkit.provenance_v02)
    stack.push(tmp_path / "image", REPO, "v2")
    _vet(stack, "v2")
    first, _, _ = _verdict_envelope(stack, index_digest)

    # Someone else's referrer (a cosign bundle) joins the fallback index, as cosign maintains it.
    subject = parse_digest(index_digest)
    with RegistryClient(stack.registry.url) as client:
        bundle = client.upload_blob(REPO, b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}')
        empty = client.upload_blob(REPO, b"{}")
        head = client.head_manifest(REPO, subject)
        assert head is not None
        referrer = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": BUNDLE_TYPE,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                "layers": [{"mediaType": BUNDLE_TYPE, "digest": bundle, "size": 62}],
                "subject": {"mediaType": head.media_type, "digest": head.digest, "size": head.size},
            }
        ).encode()
        referrer_digest = client.put_manifest(
            REPO, sha256_digest(referrer), referrer, head.media_type.replace("index", "manifest")
        )
        index = _json_manifest(stack, _fallback_tag(index_digest))
        index["manifests"].append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": referrer_digest,
                "size": len(referrer),
                "artifactType": BUNDLE_TYPE,
            }
        )
        client.put_manifest(
            REPO, _fallback_tag(index_digest), json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json"
        )
    stack.run_worker()
    assert _verdict_envelope(stack, index_digest)[0]["digest"] == first["digest"]  # nothing changed: kept

    # A hostile entry: another image's digest listed as if it were Tollgate's verdict.
    victim = write_image_layout(tmp_path / "victim", [tar_layer({"victim": b"keep me"})])
    stack.push(tmp_path / "victim", REPO, "victim")
    index = _json_manifest(stack, _fallback_tag(index_digest))
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": victim,
            "size": 1,
            "artifactType": VERDICT_TYPE,
            "annotations": {"dev.tollgate.attestation": "verdict"},
        }
    )
    with RegistryClient(stack.registry.url) as client:
        client.put_manifest(
            REPO, _fallback_tag(index_digest), json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json"
        )

    # The policy changes and the image is vetted again (as a rescan runs it): the new verdict replaces the old.
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  actions: {suspicious: quarantine}\n")
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(policy))
    result = scan_image(REPO, index_digest)
    assert result["publication"]["status"] == "published", result

    second, _, envelope = _verdict_envelope(stack, index_digest)
    assert second["digest"] != first["digest"]
    assert [e["digest"] for e in _entries(stack, index_digest, BUNDLE_TYPE)] == [referrer_digest]
    assert len(_entries(stack, index_digest, PROVENANCE_TYPE)) == 1
    assert _manifest(stack, first["digest"]).status_code == 404  # the replaced verdict is gone
    assert _manifest(stack, victim).status_code == 200  # what is not provably Tollgate's is never deleted
    assert any(victim in note for note in result["publication"]["notes"])
    att = _json_manifest(stack, _fallback_tag(index_digest) + ".att")
    assert len([layer for layer in att["layers"] if layer["annotations"].get("dev.tollgate.attestation")]) == 1
    statement = _verify_envelope(envelope, _public_key(stack))
    assert statement["predicateType"] == VSA
    assert statement["predicate"]["policy"]["uri"].endswith("/api/v1/policy/versions/1")


def test_attestation_verify_cli(stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image_layout(tmp_path / "image", [tar_layer({"srv/index.html": b"<p>hello</p>\n"})])
    stack.push(tmp_path / "image", REPO, "web")
    record = _vet(stack, "web")
    pem = tmp_path / "tollgate.pub"
    pem.write_bytes(httpx.get(f"{stack.app.url}/api/v1/keys", timeout=10).content)
    ref = f"{stack.registry.host}/{REPO}:web"

    assert main(["attestation", "verify", ref, "--key", str(pem), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True
    assert out["digest"] == record["digest"]
    assert {c["source"].split(" ")[0] for c in out["checks"]} == {"referrer", _fallback_tag(record["digest"]) + ".att"}
    assert all(c["verification_result"] == "PASSED" for c in out["checks"])

    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert main(["attestation", "verify", ref, "--key", str(other)]) == 1
    assert "NOT verified" in capsys.readouterr().out

    # A tampered copy in the registry is reported, not outvoted by the good one.
    att_tag = _fallback_tag(record["digest"]) + ".att"
    att = _json_manifest(stack, att_tag)
    envelope = json.loads(_blob(stack, att["layers"][0]["digest"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["tollgate"]["verdict"] = "clean-by-forgery"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with RegistryClient(stack.registry.url) as client:
        forged = json.dumps(envelope).encode()
        att["layers"][0]["digest"] = client.upload_blob(REPO, forged)
        att["layers"][0]["size"] = len(forged)
        client.put_manifest(REPO, att_tag, json.dumps(att).encode(), "application/vnd.oci.image.manifest.v1+json")
    assert main(["attestation", "verify", ref, "--key", str(pem), "--format", "json"]) == 1
    checks = {c["source"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks[f"{att_tag} layer 0"]["verified"] is False
    assert "no DSSE signature verifies" in checks[f"{att_tag} layer 0"]["reason"]

    assert main(["attestation", "verify", f"{stack.registry.host}/{REPO}:no-such-tag"]) == 2


def test_an_image_without_provenance_still_gets_a_record_and_a_verdict(stack: Stack, tmp_path: Path) -> None:
    digest = write_image_layout(tmp_path / "image", [tar_layer({"bin/tool": b"#!/bin/sh\necho ok\n"})])
    stack.push(tmp_path / "image", REPO, "plain")
    record = _vet(stack, "plain")
    provenance = record["provenance"]
    assert provenance["subject"]["digest"] == digest
    assert provenance["platforms"][0]["layers"][0]["diff_id"].startswith("sha256:")
    assert "build provenance attestation (SLSA v0.2/v1, BuildKit or signed)" in provenance["missing"]
    assert "git commit" in provenance["missing"]
    assert provenance["publication"]["status"] == "published"
    _, manifest, envelope = _verdict_envelope(stack, digest)
    assert manifest["subject"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    predicate = _verify_envelope(envelope, _public_key(stack))["predicate"]
    assert predicate["tollgate"]["provenance"]["missing"] == provenance["missing"]
    assert predicate["inputAttestations"] == []


def test_a_registry_that_refuses_writes_is_recorded_and_the_verdict_stands(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = write_image_layout(tmp_path / "image", [tar_layer({"bin/tool": b"#!/bin/sh\necho ok\n"})])
    stack.push(tmp_path / "image", REPO, "ro")
    stack.wait_queued(REPO, "ro")
    # The registry refuses Tollgate's manifest pushes: the failure is recorded, the scan is not failed.
    monkeypatch.setattr(RegistryClient, "put_manifest", _refuse)
    stack.run_worker()
    record = stack.record(REPO, ":ro").json()
    assert record["status"] == "done"
    assert record["verdict"] == "clean"
    assert record["provenance"]["publication"]["status"] == "failed"
    assert "refused" in record["provenance"]["publication"]["error"]
    assert _manifest(stack, _fallback_tag(digest)).status_code == 404


def _refuse(self: RegistryClient, repository: str, reference: str, raw: bytes, media_type: str) -> Any:
    from workers.errors import RegistryAuthError

    raise RegistryAuthError(f"PUT manifest {repository}:{reference}: HTTP 403 (push refused)")
