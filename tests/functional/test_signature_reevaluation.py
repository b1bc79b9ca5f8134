"""Signatures pushed after the image re-evaluate it: real registry → webhook → Redis → rq worker → store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from rules.loader import ruleset_version
from tests.functional.test_signature_discovery import REPO, push_bundle_referrer, push_legacy
from tests.support.oci import tar_layer, write_image_layout
from tests.support.sigstore import COSIGN_SIGN_PREDICATE, SIMPLE_SIGNING_MEDIA_TYPE, simple_signing_payload
from tests.support.stack import Stack
from workers.domain import Digest, parse_digest
from workers.queue import (
    PUSH_QUEUE,
    RESCAN_QUEUE,
    enqueue_subject_lookup,
    reevaluation_job_id,
    scan_job_id,
    subject_lookup_job_id,
)
from workers.registry import RegistryClient
from workers.signatures.keyed import SIGNATURE_ANNOTATION

pytestmark = pytest.mark.functional


@pytest.fixture
def client(stack: Stack) -> Iterator[RegistryClient]:
    with RegistryClient(stack.registry.url, retries=1, backoff=0.01) as made:
        yield made


def _jobs(conn: redis.Redis, name: str) -> list[str]:
    return Queue(name, connection=conn, serializer=JSONSerializer).get_job_ids()


def _vetted_image(stack: Stack, tmp_path: Path) -> tuple[Digest, datetime]:
    """Push and vet an image; its digest and when it was scanned."""
    layer = tar_layer({"etc/os-release": b"ID=debian\n", "usr/local/bin/app": b"#!/bin/sh\necho signed later\n"})
    digest = parse_digest(write_image_layout(tmp_path / "app", [layer]))
    stack.push(tmp_path / "app", REPO, "1.0")
    stack.wait_queued(REPO, "1.0")
    stack.run_worker()
    return digest, _scanned_at(stack, digest)


def _scanned_at(stack: Stack, digest: Digest) -> datetime:
    response = stack.record(REPO, f"@{digest}")
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == "done", record
    return datetime.fromisoformat(record["scanned_at"])


def _push_signature(client: RegistryClient, subject: Digest) -> Digest:
    """A cosign-style legacy ``.sig`` manifest at ``sha256-<hex>.sig``: one simple-signing layer."""
    payload = simple_signing_payload(subject, reference=f"127.0.0.1/{REPO}")
    annotations = {SIGNATURE_ANNOTATION: "MEUCIQD0"}  # its validity is not the point here
    tag = "sha256-" + subject.removeprefix("sha256:") + ".sig"
    return push_legacy(client, tag, [(SIMPLE_SIGNING_MEDIA_TYPE, payload, annotations)])


def _push_referrer(client: RegistryClient, subject: Digest) -> Digest:
    """A Sigstore bundle referrer pushed by digest, without a tag (what cosign v3 does first)."""
    bundle = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'
    return parse_digest(push_bundle_referrer(client, subject, bundle, COSIGN_SIGN_PREDICATE)["digest"])


def test_a_signature_pushed_after_the_image_re_evaluates_the_image(
    stack: Stack, client: RegistryClient, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    image, first_scan = _vetted_image(stack, tmp_path)
    ruleset = ruleset_version(stack.settings.rules_dir, stack.settings.rules_extra)

    signature = _push_signature(client, image)
    job_id = reevaluation_job_id(REPO, image, ruleset, signature)
    stack.wait_for(lambda: _jobs(redis_conn, RESCAN_QUEUE) == [job_id], what="the re-evaluation job")
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.args == [REPO, image]  # the image is rescanned …
    assert _jobs(redis_conn, PUSH_QUEUE) == []  # … and the .sig manifest is not vetted as an image
    assert stack.record(REPO, f"@{signature}").status_code == 404

    stack.run_worker()
    assert Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).get_status() == JobStatus.FINISHED
    assert _scanned_at(stack, image) > first_scan
    assert stack.record(REPO, f"@{signature}").status_code == 404


def test_a_referrer_pushed_by_digest_re_evaluates_its_subject_through_the_lookup_job(
    stack: Stack, client: RegistryClient, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    image, first_scan = _vetted_image(stack, tmp_path)
    ruleset = ruleset_version(stack.settings.rules_dir, stack.settings.rules_extra)

    referrer = _push_referrer(client, image)
    # No telling tag: the webhook admits it like any manifest, and the worker records it as not an image.
    stack.wait_for(lambda: scan_job_id(REPO, referrer, ruleset) in _jobs(redis_conn, PUSH_QUEUE), what="its scan")
    # The burst runs the scan, which records it as not an image and queues the subject lookup, then the lookup,
    # then the re-evaluation of the subject that the lookup queued.
    stack.run_worker()
    assert stack.record(REPO, f"@{referrer}").json()["verdict"] is None

    lookup_id = subject_lookup_job_id(REPO, referrer)
    plain = enqueue_subject_lookup(redis_conn, REPO, image, settings=stack.settings)  # an image names no subject
    stack.run_worker()
    found = Job.fetch(lookup_id, connection=redis_conn, serializer=JSONSerializer).return_value()
    assert found == {
        "status": "queued",
        "subject": image,
        "job_id": reevaluation_job_id(REPO, image, ruleset, referrer),
        "created": True,
    }
    skipped = Job.fetch(plain.job_id, connection=redis_conn, serializer=JSONSerializer).return_value()
    assert skipped == {"status": "skipped", "reason": "the manifest has no subject"}
    assert _scanned_at(stack, image) > first_scan
