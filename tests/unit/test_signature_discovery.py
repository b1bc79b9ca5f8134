"""Unit tests of signature discovery against an in-process fake registry: hostile content, the referrers API."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from workers.domain import Digest, MediaType, sha256_digest
from workers.errors import RegistryUnavailable
from workers.registry import RegistryClient
from workers.signatures.discovery import (
    BUNDLE_ARTIFACT_TYPE,
    MAX_PAYLOAD_BYTES,
    SIMPLE_SIGNING_MEDIA_TYPE,
    discover,
    signature_subject,
    subject_of_manifest,
    subject_of_tag,
)

IMAGE = sha256_digest(b"image")
TAG = "sha256-" + IMAGE.removeprefix("sha256:")
BUNDLE = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'


class FakeRegistry:
    """Manifests by tag or digest and blobs by digest; anything else is 404 (no referrers API by default)."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.referrers: list[dict[str, Any]] | None = None
        self.fail_blobs = False

    def manifest(self, reference: str, document: dict[str, Any] | bytes) -> dict[str, Any]:
        raw = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.manifests[reference] = raw
        self.manifests[sha256_digest(raw)] = raw
        return {"mediaType": MediaType.OCI_MANIFEST, "digest": sha256_digest(raw), "size": len(raw)}

    def blob(self, data: bytes, media_type: str, **annotations: str) -> dict[str, Any]:
        self.blobs[sha256_digest(data)] = data
        described: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
        if annotations:
            described["annotations"] = annotations
        return described

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        kind, reference = parts[-2], parts[-1]
        if kind == "manifests" and reference in self.manifests:
            return httpx.Response(200, content=self.manifests[reference])
        if kind == "blobs" and self.fail_blobs:
            return httpx.Response(503)
        if kind == "blobs" and reference in self.blobs:
            return httpx.Response(200, content=self.blobs[reference])
        if kind == "referrers" and self.referrers is not None:
            return httpx.Response(200, json={"schemaVersion": 2, "manifests": self.referrers})
        return httpx.Response(404)

    def discover(self, subject: Digest = IMAGE) -> Any:
        with RegistryClient("http://reg.test", transport=httpx.MockTransport(self), retries=0) as client:
            return discover(client, "team/app", subject)


def _referrer(fake: FakeRegistry, subject: Digest = IMAGE, *, layers: list[Any] | None = None) -> dict[str, Any]:
    document = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": BUNDLE_ARTIFACT_TYPE,
        "config": fake.blob(b"{}", MediaType.OCI_EMPTY),
        "layers": layers if layers is not None else [fake.blob(BUNDLE, BUNDLE_ARTIFACT_TYPE)],
        "subject": {"mediaType": MediaType.OCI_MANIFEST, "digest": subject, "size": 10},
    }
    entry = fake.manifest(sha256_digest(json.dumps(document).encode()), document)
    return {**entry, "artifactType": BUNDLE_ARTIFACT_TYPE}


def _sig_manifest(layers: list[Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "config": {}, "layers": layers}


def test_hostile_legacy_layers_become_notes() -> None:
    fake = FakeRegistry()
    good = fake.blob(b"payload", SIMPLE_SIGNING_MEDIA_TYPE, **{"dev.cosignproject.cosign/signature": "c2ln"})
    huge = {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": sha256_digest(b"huge"), "size": MAX_PAYLOAD_BYTES + 1}
    missing = {"mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "digest": sha256_digest(b"gone"), "size": 4}
    lying = {**fake.blob(b"short", SIMPLE_SIGNING_MEDIA_TYPE), "size": 4}
    bad_annotations = {**fake.blob(b"x", SIMPLE_SIGNING_MEDIA_TYPE), "annotations": {"k": 1}}
    fake.manifest(f"{TAG}.sig", _sig_manifest([good, huge, missing, lying, bad_annotations, "junk"]))
    fake.manifest(f"{TAG}.att", b"{not json")
    found = fake.discover()
    (signature,) = found.signatures
    assert signature.blob == b"payload" and signature.source == f"{TAG}.sig@{signature.manifest_digest}#0"
    reasons = [note.reason for note in found.notes]
    assert reasons[0] == f"blob is {MAX_PAYLOAD_BYTES + 1} bytes, more than the {MAX_PAYLOAD_BYTES} allowed"
    assert reasons[1] == f"blob {missing['digest']} is missing"
    assert reasons[2] == "blob has 5 bytes, its descriptor says 4"
    assert reasons[3] == "descriptor annotations are not a string map"
    assert reasons[4] == "descriptor is not an object"
    assert reasons[5] == "manifest is not JSON" and found.notes[5].where == f"{TAG}.att"


def test_fallback_index_hostile_entries() -> None:
    fake = FakeRegistry()
    good = _referrer(fake)
    wrong_subject = _referrer(fake, sha256_digest(b"other"))
    two_layers = _referrer(fake, layers=[fake.blob(BUNDLE, BUNDLE_ARTIFACT_TYPE), fake.blob(b"2", "x/y")])
    wrong_layer = _referrer(fake, layers=[fake.blob(b"sbom", "text/spdx")])
    unlisted = {"mediaType": MediaType.OCI_MANIFEST, "digest": sha256_digest(b"no"), "size": 2}
    sbom = {**unlisted, "artifactType": "application/spdx+json"}  # another kind of referrer: skipped silently
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX}
    fake.manifest(TAG, {**index, "manifests": [good, good, wrong_subject, two_layers, wrong_layer, unlisted, sbom]})
    found = fake.discover()
    assert [b.manifest_digest for b in found.bundles] == [good["digest"]]  # listed twice, read once
    assert found.bundles[0].found_via == f"tag {TAG}" and found.bundles[0].bundle == BUNDLE
    assert [note.reason for note in found.notes] == [
        f"ignored: its subject is {sha256_digest(b'other')}, not {IMAGE}",
        "a bundle referrer must have exactly one layer",
        f"layer media type text/spdx, expected {BUNDLE_ARTIFACT_TYPE}",
        f"listed by the tag {TAG} but missing",
    ]


def test_fallback_tag_that_is_not_an_index() -> None:
    fake = FakeRegistry()
    fake.manifest(TAG, _sig_manifest([]))
    found = fake.discover()
    assert found.empty and found.notes[0].reason.startswith("not an OCI image index")


def test_referrers_api_is_preferred() -> None:
    fake = FakeRegistry()
    fake.referrers = [_referrer(fake)]
    fake.manifest(TAG, b"{not json")  # ignored: the API answered
    found = fake.discover()
    assert found.referrers_api and [b.found_via for b in found.bundles] == ["referrers API"]
    assert found.notes == ()


def test_unreachable_registry_raises_rather_than_reporting_unsigned() -> None:
    fake = FakeRegistry()
    fake.manifest(f"{TAG}.sig", _sig_manifest([fake.blob(b"p", SIMPLE_SIGNING_MEDIA_TYPE)]))
    fake.fail_blobs = True
    with pytest.raises(RegistryUnavailable):
        fake.discover()


def test_signature_subject() -> None:
    hex_value = IMAGE.removeprefix("sha256:")
    for tag in (f"sha256-{hex_value}", f"sha256-{hex_value}.sig", f"sha256-{hex_value}.att"):
        assert subject_of_tag(tag) == IMAGE == signature_subject(tag=tag)
    for tag in ("latest", f"sha256-{hex_value}.sbom", f"sha256-{hex_value[:-1]}", f"sha512-{hex_value}"):
        assert subject_of_tag(tag) is None
    other = sha256_digest(b"other")
    referrer = json.dumps({"subject": {"digest": other}}).encode()
    assert subject_of_manifest(referrer) == other
    assert signature_subject(tag=f"sha256-{hex_value}", manifest=referrer) == other  # the manifest's subject wins
    assert signature_subject(tag=f"sha256-{hex_value}", manifest=b"{}") == IMAGE
    for raw in (b"nope", b"[]", b'{"subject": {"digest": "sha256:short"}}', b'{"subject": "x"}'):
        assert subject_of_manifest(raw) is None
    assert signature_subject() is None
