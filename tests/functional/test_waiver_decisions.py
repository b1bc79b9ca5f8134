"""Waivers and policy versions deciding real images: real registry, real Redis, rq worker, store on both backends.

Time is the store's clock (a seam the jobs share), moved by the test: no test waits for a real expiry. The
scheduled expiry job is run the way rq's scheduler would run it at ``expires_at`` (its function, called).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tests.functional.test_push_to_verdict import REVERSE_SHELL, _base_layer
from tests.support.oci import tar_layer, write_image_layout
from tests.support.receiver import Receiver, serve_receiver
from tests.support.registry import RunningRegistry
from workers import audit, jobs
from workers.domain import Action, Actor, ActorKind, Digest, Role, Verdict, parse_digest
from workers.policy_versions import schedule_policy_redecisions, set_policy
from workers.queue import RESCAN_QUEUE, run_worker, waiver_expiry_job_id
from workers.settings import Settings
from workers.store import ImageRecord, Store
from workers.waivers import create_waiver, expiry_sweep_job, revoke_waiver, schedule_redecisions

pytestmark = pytest.mark.functional

REPO = "team/app"
RULE = "backdoor.reverse-shell-bash"
ALICE = Actor(ActorKind.USER, "alice", Role.SECURITY)
EXPLAINED_WAIVED = f"clean: every finding is waived; waived, not counted: {RULE}"


class Clock:
    """The store's clock, starting now (so rq's own timestamps agree), moved only by the test."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@dataclass
class World:
    """Everything one test drives: settings (as the worker reads them), the jobs' store and its clock."""

    settings: Settings
    store: Store
    clock: Clock
    registry: RunningRegistry
    conn: redis.Redis

    def work(self) -> None:
        """Drain every queue with a real rq worker in this process."""
        run_worker(self.settings, burst=True, with_scheduler=False, simple=True)

    def record(self, digest: Digest) -> ImageRecord:
        found = self.store.get_record(REPO, digest)
        assert found is not None
        return found

    def verdicts(self, digest: Digest) -> list[tuple[str | None, str, str]]:
        """(previous verdict, verdict, action) of every audited verdict change of the image, in order."""
        return [
            (e.details["previous_verdict"], e.details["verdict"], e.details["action"])
            for e in audit.events(self.store, action="verdict", target=f"{REPO}@{digest}")
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as made:
        yield made


@pytest.fixture
def world(
    registry: RunningRegistry,
    database_url: str,
    redis_url: str,
    redis_conn: redis.Redis,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    for key in list(os.environ):
        if key.startswith("TOLLGATE_") and not key.startswith("TOLLGATE_TEST_"):
            monkeypatch.delenv(key)
    env = {
        "TOLLGATE_DATABASE_URL": database_url,
        "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_REGISTRY_URL": registry.url,
        "TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "false",
        "TOLLGATE_RECONCILE_INTERVAL": "0",
        "TOLLGATE_NOTIFY_URLS": f"{receiver.url}/hook#events=scan.error",
        "TOLLGATE_NOTIFY_BACKOFF": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = Store(database_url)
    store.migrate()
    clock = Clock()
    store.now = clock
    monkeypatch.setattr(jobs, "_store", lambda: store)
    yield World(Settings.from_env(), store, clock, registry, redis_conn)
    store.close()


def _push_backdoor(world: World, tmp_path: Path, tag: str = "1.0") -> Digest:
    """An image whose only finding is a reverse shell it runs at start: malicious, quarantine."""
    layout = tmp_path / f"img-{tag}"
    digest = write_image_layout(
        layout,
        [_base_layer(), tar_layer({"usr/local/bin/start.sh": REVERSE_SHELL + tag.encode()})],
        config={"config": {"Entrypoint": ["/usr/local/bin/start.sh"]}},
    )
    world.registry.push_layout(layout, REPO, tag)
    checked = parse_digest(digest)
    world.store.record_push(REPO, checked, tag=tag, media_type=None)
    return checked


def _scanned(world: World, tmp_path: Path) -> Digest:
    digest = _push_backdoor(world, tmp_path)
    outcome = jobs.scan_image(REPO, digest)
    assert (outcome["verdict"], outcome["action"]) == ("malicious", "quarantine"), outcome
    (finding,) = world.record(digest).findings
    assert finding.rule == RULE and not finding.waived
    world.work()  # whatever the decision queued (the quarantine move) runs now, not in the middle of the test
    return digest


def _waive(world: World, digest: Digest, days: float = 1) -> int:
    waiver = create_waiver(
        world.store,
        ALICE,
        rule=RULE,
        digest=digest,
        path_pattern="/usr/local/bin/*.sh",
        reason="a lab image for the incident-response drill (SEC-42)",
        expires_at=world.clock() + timedelta(days=days),
        max_days=30,
    )
    assert schedule_redecisions(world.settings, world.store, world.conn, waiver) == 1
    return waiver.id


def _assert_waived(world: World, digest: Digest, waiver_id: int) -> None:
    record = world.record(digest)
    assert (record.verdict, record.action) == (Verdict.CLEAN, Action.ALLOW)
    (finding,) = record.findings  # still there, visible as waived, naming the waiver
    assert finding.rule == RULE and finding.waived and finding.waiver_id == waiver_id
    assert record.explanation == EXPLAINED_WAIVED
    assert record.to_json()["findings"][0]["waiver_id"] == waiver_id


def _assert_original(world: World, digest: Digest) -> None:
    record = world.record(digest)
    assert (record.verdict, record.action) == (Verdict.MALICIOUS, Action.QUARANTINE)
    (finding,) = record.findings
    assert not finding.waived and finding.waiver_id is None
    assert record.explanation.startswith(f"malicious: {RULE} (critical, backdoor) at /usr/local/bin/start.sh")


def test_a_waiver_changes_the_decision_and_its_expiry_restores_it_by_itself(world: World, tmp_path: Path) -> None:
    digest = _scanned(world, tmp_path)
    waiver_id = _waive(world, digest, days=1)
    # The expiry is scheduled for the moment the waiver ends.
    scheduled = ScheduledJobRegistry(RESCAN_QUEUE, connection=world.conn, serializer=JSONSerializer)
    assert waiver_expiry_job_id(waiver_id, world.clock() + timedelta(days=1)) in scheduled.get_job_ids()

    world.work()  # the re-decision: no rescan, the stored finding decided again under the waiver
    _assert_waived(world, digest, waiver_id)
    assert world.verdicts(digest) == [(None, "malicious", "quarantine"), ("malicious", "clean", "allow")]

    world.clock.advance(hours=23)
    assert expiry_sweep_job()["expired"] == []  # not yet
    world.clock.advance(hours=1)
    assert expiry_sweep_job()["expired"] == [waiver_id]  # what rq's scheduler runs at expires_at
    assert expiry_sweep_job()["expired"] == []  # the reconciler's safety-net pass later: already done
    world.work()
    _assert_original(world, digest)
    assert world.verdicts(digest)[-1] == ("clean", "malicious", "quarantine")
    (expired,) = audit.events(world.store, action="waiver.expire")
    assert expired.target == f"waiver:{waiver_id}" and expired.actor == "system:tollgate"


def test_revoking_a_waiver_restores_the_decision(world: World, tmp_path: Path) -> None:
    digest = _scanned(world, tmp_path)
    waiver_id = _waive(world, digest, days=7)
    world.work()
    _assert_waived(world, digest, waiver_id)
    world.clock.advance(hours=1)
    revoked = revoke_waiver(world.store, ALICE, waiver_id, "the drill is over")
    assert schedule_redecisions(world.settings, world.store, world.conn, revoked) == 1
    world.work()
    _assert_original(world, digest)
    assert [v[1:] for v in world.verdicts(digest)] == [
        ("malicious", "quarantine"),
        ("clean", "allow"),
        ("malicious", "quarantine"),
    ]
    (event,) = audit.events(world.store, action="waiver.revoke")
    assert event.reason == "the drill is over" and event.actor == "user:alice"


def test_a_waiver_in_force_applies_to_the_scan_itself(world: World, tmp_path: Path) -> None:
    waiver = create_waiver(
        world.store,
        ALICE,
        rule=RULE,
        repository_pattern="team/*",
        reason="reverse shells are this team's training material",
        expires_at=world.clock() + timedelta(days=2),
        max_days=30,
    )
    digest = _push_backdoor(world, tmp_path, "2.0")
    outcome = jobs.scan_image(REPO, digest)
    assert (outcome["verdict"], outcome["action"]) == ("clean", "allow")
    _assert_waived(world, digest, waiver.id)
    # The grace-period recheck and signature re-evaluation decide with waivers too.
    again = jobs.reverify_image(REPO, digest)
    assert (again["verdict"], again["action"]) == ("clean", "allow")
    _assert_waived(world, digest, waiver.id)


def test_a_policy_change_re_decides_images_through_the_worker(world: World, tmp_path: Path) -> None:
    digest = _scanned(world, tmp_path)
    version = set_policy(
        world.store,
        ALICE,
        "version: 1\nrepositories:\n  - match: 'team/**'\n    actions: {malicious: warn}\n",
        "team images are only warned about during the migration",
        settings=world.settings,
    )
    assert schedule_policy_redecisions(world.settings, world.store, world.conn) == 1
    world.work()
    record = world.record(digest)
    assert (record.verdict, record.action) == (Verdict.MALICIOUS, Action.WARN)
    assert world.verdicts(digest)[-1] == ("malicious", "malicious", "warn")
    (change,) = audit.events(world.store, action="policy.change")
    assert change.target == f"policy:{version.id}" and change.actor == "user:alice"


def test_a_broken_policy_file_records_the_image_as_an_error_and_notifies(
    world: World, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  actions: {malicious: banish}\n")
    monkeypatch.setenv("TOLLGATE_POLICY_FILE", str(policy))
    digest = _push_backdoor(world, tmp_path)
    outcome = jobs.scan_image(REPO, digest)
    assert outcome["status"] == "error" and "policy.yaml:3" in outcome["error"]
    record = world.record(digest)
    assert record.status.value == "error" and record.verdict is None  # never judged under a default policy
    world.work()
    (delivery,) = receiver.at("/hook")
    body = delivery.json()
    assert body["event"] == "scan.error" and body["image"] == f"{REPO}@{digest}"
    assert "policy.yaml:3" in body["reason"] and body["link"].endswith(f"/images/{REPO}@{digest}")
