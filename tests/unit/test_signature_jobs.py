"""The subject lookup of pushed referrers: which image a manifest names, and hostile manifests as reasons."""

from __future__ import annotations

import json

import pytest

from tests.support.storage import digest_of
from workers.domain import Digest, MediaType, sha256_digest
from workers.errors import IntegrityError, NotFound, RegistryProtocolError, TransientError, UnsupportedMediaType
from workers.registry import FetchedManifest
from workers.signature_jobs import SubjectLookup, lookup_subject

REPO = "team/app"
SUBJECT = digest_of("image")


class Manifests:
    """Serves one manifest, or raises one error, for a digest; records what was asked (no URL is ever used)."""

    def __init__(self, raw: bytes | None = None, error: Exception | None = None) -> None:
        self.raw, self.error = raw, error
        self.asked: list[tuple[str, str]] = []

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        self.asked.append((repository, reference))
        if self.error is not None:
            raise self.error
        assert self.raw is not None
        return FetchedManifest(media_type=MediaType.OCI_MANIFEST, digest=sha256_digest(self.raw), raw=self.raw)


def referrer(subject: object) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of("{}"), "size": 2},
            "layers": [],
            "subject": subject,
        }
    ).encode()


def test_a_referrer_names_its_subject_and_is_read_by_digest() -> None:
    raw = referrer({"mediaType": MediaType.OCI_MANIFEST, "digest": SUBJECT, "size": 418})
    artifact = sha256_digest(raw)
    manifests = Manifests(raw)
    assert lookup_subject(manifests, REPO, artifact) == SubjectLookup(SUBJECT)
    assert manifests.asked == [(REPO, artifact)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (json.dumps({"schemaVersion": 2, "layers": []}).encode(), "has no subject"),
        (referrer({"digest": "sha256:abc"}), "has no subject"),
        (referrer({"digest": 7}), "has no subject"),
        (referrer("sha256:" + "0" * 64), "has no subject"),
        (referrer(None), "has no subject"),
        (b"[1, 2]", "has no subject"),
        (b"{not json", "has no subject"),
        (b"\xff\xfe", "has no subject"),
        (b"[" * 100_000, "has no subject"),
    ],
)
def test_manifests_without_a_usable_subject_are_a_reason(raw: bytes, reason: str) -> None:
    found = lookup_subject(Manifests(raw), REPO, digest_of("artifact"))
    assert found.subject is None
    assert reason in found.reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NotFound("gone"), "no longer in the registry"),
        (IntegrityError("manifest is larger than 4194304 bytes\x1b[2J"), "unreadable: manifest is larger"),
        (RegistryProtocolError("garbage"), "unreadable"),
        (UnsupportedMediaType("text/html"), "unreadable"),
    ],
)
def test_unreadable_manifests_are_a_reason(error: Exception, reason: str) -> None:
    found = lookup_subject(Manifests(error=error), REPO, digest_of("artifact"))
    assert found.subject is None
    assert reason in found.reason
    assert "\x1b" not in found.reason  # reasons end up in logs and job results


def test_a_manifest_naming_itself_is_refused() -> None:
    artifact: Digest = digest_of("artifact")
    found = lookup_subject(Manifests(referrer({"digest": artifact})), REPO, artifact)
    assert found == SubjectLookup(None, "the manifest names itself as its subject")


def test_a_registry_outage_propagates_so_the_job_is_retried() -> None:
    with pytest.raises(TransientError):
        lookup_subject(Manifests(error=TransientError("connection refused")), REPO, digest_of("artifact"))
