"""Through the whole stack: a policy that requires a signature quarantines an unsigned push in the registry once
the grace period ends, and releases it exactly as it was when a valid signature arrives."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.functional.test_signature_discovery import REPO
from tests.functional.test_signature_verify import _key, _sign_keyed
from tests.support.oci import tar_layer, write_image_layout
from tests.support.stack import Stack
from workers import audit, jobs
from workers.domain import parse_digest
from workers.queue import RESCAN_QUEUE
from workers.registry import RegistryClient

pytestmark = pytest.mark.functional

# Short, and really waited for: Tollgate's own pushes re-evaluate the image on the real clock.
GRACE = 15


def test_unsigned_push_is_quarantined_after_the_grace_period_and_released_by_a_valid_signature(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_conn: redis.Redis
) -> None:
    release, _ = _key(tmp_path, "release")  # release.pub beside the policy file
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\nrepositories:\n  - match: team/*\n"
        f"    signatures: {{required: true, unsigned: quarantine, grace_seconds: {GRACE}, keys: [release.pub]}}\n"
    )
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(policy_file))
    layout = tmp_path / "app"
    digest = parse_digest(write_image_layout(layout, [tar_layer({"usr/local/bin/app": b"#!/bin/sh\necho ok\n"})]))
    stack.push(layout, REPO, "1.0")
    stack.wait_queued(REPO, "1.0")
    stack.run_worker()

    # The push's own decision: unsigned but within the grace period, so allowed and left in place.
    (first, *_) = audit.events(jobs._store(), target=f"{REPO}@{digest}", action="verdict")
    assert first.details["verdict"] == "clean" and first.details["action"] == "allow", first.reason
    assert "within the grace period" in first.reason

    # The recheck scheduled for the end of the grace period: still unsigned, so the policy quarantines it.
    stored = jobs._store().get_record(REPO, digest)
    assert stored is not None
    deadline = stored.first_seen + timedelta(seconds=GRACE)
    while datetime.now(UTC) <= deadline:  # time has to pass here; nothing else is waited for this way
        time.sleep(0.2)
    ended = jobs.reverify_image(REPO, digest)
    assert ended["action"] == "quarantine" and ended["signatures"]["state"] == "unsigned"
    stack.run_worker()  # the move job

    record = stack.record(REPO, f"@{digest}").json()
    assert record["quarantined"] is True and record["quarantine"]["state"] == "held", record["quarantine"]
    with RegistryClient(stack.registry.url) as client:
        head = client.head_manifest(REPO, "1.0")
        assert head is not None and head.digest != digest  # the tag serves the placeholder now
        original = client.get_manifest(f"quarantine/{REPO}", digest).raw  # nothing was lost

        # A valid signature arrives: its .sig push re-evaluates the image, which is signed now and released.
        _sign_keyed(client, digest, release, digest)
    rescans = Queue(RESCAN_QUEUE, connection=redis_conn, serializer=JSONSerializer)
    stack.wait_for(lambda: bool(rescans.get_job_ids()), 30, "the re-evaluation the .sig push queues")
    stack.run_worker()
    stack.run_worker()  # the release move the decision queued, if the first burst ended before it

    record = stack.record(REPO, f"@{digest}").json()
    assert record["action"] == "allow" and record["quarantined"] is False, record["explanation"]
    assert record["quarantine"]["state"] == "released"
    assert [check["verified"] for check in record["signatures"] if check["kind"] == "cosign-keyed"] == [True]
    with RegistryClient(stack.registry.url) as client:
        head = client.head_manifest(REPO, "1.0")
        assert head is not None and head.digest == digest
        assert client.get_manifest(REPO, "1.0").raw == original
