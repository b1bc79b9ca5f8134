"""Policy versions against real databases: set_policy, the file seeding, history, the audit trail, re-decisions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.storage import digest_of, make_report
from workers import audit
from workers.domain import Action, Actor, ActorKind, Role, Verdict
from workers.errors import ConfigError
from workers.policy_versions import (
    current_policy,
    effective_policy,
    policy_history,
    schedule_policy_redecisions,
    set_policy,
    sync_policy_file,
    text_digest,
)
from workers.queue import RESCAN_QUEUE, redecision_job_id
from workers.settings import Settings
from workers.store import Store

ALICE = Actor(ActorKind.USER, "alice", Role.SECURITY)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STRICT = "version: 1\ndefault:\n  actions: {suspicious: quarantine}\n"
LENIENT = "version: 1\ndefault:\n  actions: {malicious: warn, suspicious: warn}\n"


@pytest.fixture
def clock(store: Store) -> list[datetime]:
    moments = [START]

    def now() -> datetime:
        moments[0] += timedelta(seconds=1)
        return moments[0]

    store.now = now
    return moments


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return Settings(database_url=database_url, redis_url=redis_url, policy_file=None)


def _file_settings(settings: Settings, path: Path) -> Settings:
    return Settings(database_url=settings.database_url, redis_url=settings.redis_url, policy_file=path)


def test_no_version_is_the_built_in_default(store: Store, settings: Settings) -> None:
    assert current_policy(store, settings) is None
    policy = effective_policy(store, settings)
    assert policy.action_for(Verdict.MALICIOUS, "team/app") is Action.QUARANTINE
    assert policy.action_for(Verdict.SUSPICIOUS, "team/app") is Action.WARN


def test_set_policy_makes_a_version_in_force_and_audits_the_diff(
    store: Store, settings: Settings, clock: list[datetime]
) -> None:
    first = set_policy(store, ALICE, STRICT, "suspicious images are held from now on", settings=settings)
    assert first.source == "api" and first.actor == "user:alice" and first.digest == text_digest(STRICT)
    assert effective_policy(store, settings).action_for(Verdict.SUSPICIOUS, "team/app") is Action.QUARANTINE
    second = set_policy(store, ALICE, LENIENT, "incident over, back to warnings", settings=settings)
    assert second.id > first.id
    assert current_policy(store, settings) == second
    assert effective_policy(store, settings).action_for(Verdict.MALICIOUS, "team/app") is Action.WARN
    assert policy_history(store, 10) == [second, first]
    assert policy_history(store, 1) == [second]
    changes = audit.events(store, action="policy.change")
    assert [e.target for e in changes] == [f"policy:{first.id}", f"policy:{second.id}"]
    latest = changes[-1]
    assert latest.actor == "user:alice" and latest.reason == "incident over, back to warnings"
    assert latest.details["previous_version"] == first.id and latest.details["version"] == second.id
    assert latest.details["added_lines"] == 1 and latest.details["removed_lines"] == 1
    assert "-  actions: {suspicious: quarantine}" in latest.details["diff"]
    assert "+  actions: {malicious: warn, suspicious: warn}" in latest.details["diff"]
    assert changes[0].details["previous_version"] is None and changes[0].details["added_lines"] == 3
    assert first.to_json()["text"] == STRICT and first.to_json()["created_at"].endswith("Z")


def test_identical_text_is_no_new_version(store: Store, settings: Settings) -> None:
    first = set_policy(store, ALICE, STRICT, "hold suspicious images", settings=settings)
    again = set_policy(store, ALICE, STRICT, "same again", settings=settings)
    assert again == first
    assert len(policy_history(store)) == 1 and len(audit.events(store, action="policy.change")) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\n", "version"),
        ("version: 1\ndefault:\n  actions: {suspicious: quarantine, malicious: warn}\n", "milder"),
        ("version: 1\nrepositories:\n  - match: 'Team/*'\n", "'Team/*'"),
        ("version: 1\ndefualt: {}\n", "policy file <policy change>:2: defualt: unknown key"),
        ("version: 1\nversion: 1\n", "duplicate key"),
        ("version: [1\n", "invalid YAML"),
        ("", "the policy is empty"),
        ("version: 1\n# " + "x" * 300_000 + "\n", "larger than"),
        ("version: 1\n\x00", "NUL"),
    ],
)
def test_invalid_text_is_refused_with_diagnostics(store: Store, settings: Settings, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        set_policy(store, ALICE, text, "try it", settings=settings)
    assert message in refused.value.diagnostics()
    assert policy_history(store) == [] and audit.events(store, action="policy.change") == []


def test_a_reason_is_required(store: Store, settings: Settings) -> None:
    with pytest.raises(ValueError, match="a reason is required"):
        set_policy(store, ALICE, STRICT, "  ", settings=settings)
    assert policy_history(store) == []


def test_the_file_seeds_the_policy_and_the_last_change_wins(
    store: Store, settings: Settings, tmp_path: Path, clock: list[datetime]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(STRICT)
    with_file = _file_settings(settings, path)
    seeded = current_policy(store, with_file)
    assert seeded is not None and seeded.source == "file" and seeded.actor == "system:file"
    assert seeded.reason == f"seeded from TOLLGATE_POLICY_FILE {path}" and seeded.text == STRICT
    assert sync_policy_file(store, with_file) is None  # unchanged: nothing new
    (event,) = audit.events(store, action="policy.change")
    assert event.actor == "system:file" and event.details["source"] == "file"

    by_api = set_policy(store, ALICE, LENIENT, "temporarily lenient", settings=with_file)
    assert current_policy(store, with_file) == by_api  # the file did not change: the API version stays
    assert effective_policy(store, with_file).action_for(Verdict.MALICIOUS, "x/y") is Action.WARN

    path.write_text(STRICT + "repositories:\n  - match: 'prod/**'\n    actions: {clean: allow}\n")
    os.utime(path, ns=(1, 2))  # a different mtime whatever the file system's resolution
    edited = current_policy(store, with_file)
    assert edited is not None and edited.source == "file" and edited.id > by_api.id
    assert edited.reason == f"changed in TOLLGATE_POLICY_FILE {path}"
    assert effective_policy(store, with_file).action_for(Verdict.SUSPICIOUS, "x/y") is Action.QUARANTINE
    assert [v.source for v in policy_history(store)] == ["file", "api", "file"]


def test_a_broken_file_is_never_silently_replaced(store: Store, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(LENIENT)
    with_file = _file_settings(settings, path)
    effective_policy(store, with_file)
    path.write_text("version: 1\ndefault:\n  actions: {malicious: allowed}\n")
    os.utime(path, ns=(3, 4))
    with pytest.raises(ConfigError, match=r"policy file .*policy\.yaml:3"):
        effective_policy(store, with_file)
    # Reading what is in force still works (pages), and nothing broken was recorded.
    current = current_policy(store, with_file)
    assert current is not None and current.text == LENIENT
    assert len(policy_history(store)) == 1
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read it"):
        effective_policy(store, with_file)


def test_relative_key_paths_are_read_beside_the_policy_file(store: Store, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(STRICT)
    with pytest.raises(ConfigError, match=r"missing\.pub"):
        set_policy(
            store,
            ALICE,
            "version: 1\ndefault:\n  signatures: {required: true, keys: [missing.pub]}\n",
            "require signatures",
            settings=_file_settings(settings, path),
        )


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def test_a_change_re_decides_every_decided_image_once(store: Store, settings: Settings, conn: redis.Redis) -> None:
    held, warned, allowed = digest_of("held"), digest_of("warned"), digest_of("allowed")
    store.save_report(make_report("team/app", held))
    store.save_report(make_report("team/app", warned, verdict=Verdict.SUSPICIOUS, action=Action.WARN))
    store.save_report(make_report("team/web", allowed, verdict=Verdict.CLEAN, action=Action.ALLOW, findings=[]))
    store.record_push("team/new", digest_of("queued"), tag="1", media_type=None)  # no verdict yet
    version = set_policy(store, ALICE, LENIENT, "warn only", settings=settings)
    assert schedule_policy_redecisions(settings, store, conn) == 3
    queued = Queue(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()
    cause = f"policy-{version.id}"
    assert sorted(queued) == sorted(
        redecision_job_id(repo, digest, cause)
        for repo, digest in (("team/app", held), ("team/app", warned), ("team/web", allowed))
    )
    assert schedule_policy_redecisions(settings, store, conn) == 0  # the periodic pass again: already done
    set_policy(store, ALICE, STRICT, "hold again", settings=settings)
    assert schedule_policy_redecisions(settings, store, conn) == 3
