"""The quarantine state machine over a real store (both backends) and a real Redis: who may move what, and when."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq.job import Job

from tests.support.storage import digest_of, make_report
from tests.unit.test_openapi import OPENAPI_PATH, validator_for
from tests.unit.test_webhook import envelope, make_settings, post, push_event, push_jobs
from workers import audit
from workers.domain import SYSTEM_ACTOR, Action, Actor, ActorKind, MoveKind, Role, Verdict
from workers.errors import ActionRefused, QueueUnavailable, UnknownImage
from workers.quarantine.jobs import enforce_decision, on_move_failed, request_move, resume_moves
from workers.quarantine.state import (
    HoldState,
    MoveOutcome,
    Origin,
    Superseded,
    checkpoint,
    copy_tag,
    get_hold,
    hold_summary,
    moves_of,
    placeholder_digests,
)
from workers.queue import SERIALIZER, move_job_id
from workers.settings import Settings
from workers.store import Store

REPO = "team/app"
DIGEST = digest_of("bad-image")
ALICE = Actor(ActorKind.USER, "alice", Role.SECURITY)


@pytest.fixture
def settings(redis_url: str, store: Store) -> Settings:
    return Settings.from_env({}, redis_url=redis_url, database_url=str(store.url.render_as_string(False)))


@pytest.fixture
def image(store: Store) -> str:
    store.record_push(REPO, DIGEST, tag="v1", media_type=None)
    store.save_report(make_report(REPO, DIGEST))
    return DIGEST


def move_kinds(store: Store) -> list[tuple[str, str, MoveOutcome]]:
    return [(m.kind.value, m.actor, m.outcome) for m in moves_of(store, REPO, DIGEST)]


def test_a_policy_quarantine_is_queued_once_and_released_when_the_decision_changes(
    settings: Settings, store: Store, redis_conn: redis.Redis, image: str
) -> None:
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None
    assert (hold.state, hold.origin, hold.kind) == (HoldState.PRESERVING, Origin.POLICY, MoveKind.QUARANTINE)
    assert hold.copy_repository == f"quarantine/{REPO}"
    assert hold.reason.startswith("policy: ")
    job = Job.fetch(move_job_id(REPO, DIGEST), connection=redis_conn, serializer=SERIALIZER)
    assert job.args == [REPO, DIGEST, hold.move_id]

    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)  # already on its way: nothing new
    assert move_kinds(store) == [("quarantine", "system:tollgate", MoveOutcome.RUNNING)]

    enforce_decision(settings, store, REPO, DIGEST, Action.ALLOW)  # e.g. a waiver or a signature arrived
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.RELEASING and hold.origin is Origin.POLICY
    assert move_kinds(store) == [
        ("quarantine", "system:tollgate", MoveOutcome.SKIPPED),  # superseded before it finished
        ("release", "system:tollgate", MoveOutcome.RUNNING),
    ]
    enforce_decision(settings, store, REPO, DIGEST, Action.WARN)
    assert len(moves_of(store, REPO, DIGEST)) == 2


def test_a_person_release_is_sticky_against_later_quarantine_decisions(
    settings: Settings, store: Store, redis_conn: redis.Redis, image: str
) -> None:
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    ticket = request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.RELEASE, ALICE, "false positive")
    assert ticket.kind is MoveKind.RELEASE and ticket.state == "releasing"
    assert ticket.job_id == move_job_id(REPO, DIGEST)
    assert ticket.to_json() == {
        "move_id": ticket.move_id,
        "job_id": ticket.job_id,
        "kind": "release",
        "state": "releasing",
    }
    checkpoint(store, REPO, DIGEST, ticket.move_id, state=HoldState.RELEASED)

    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)

    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.RELEASED and hold.origin is Origin.MANUAL
    assert [k for k, _, _ in move_kinds(store)] == ["quarantine", "release"]
    requested = audit.events(store, target=f"{REPO}@{DIGEST}", action="release")
    assert [(e.actor, e.reason, e.details["phase"]) for e in requested] == [
        ("user:alice", "false positive", "requested")
    ]


def test_a_person_quarantine_is_never_released_automatically(
    settings: Settings, store: Store, redis_conn: redis.Redis, image: str
) -> None:
    ticket = request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.QUARANTINE, ALICE, "looks bad")
    checkpoint(store, REPO, DIGEST, ticket.move_id, state=HoldState.HELD)
    enforce_decision(settings, store, REPO, DIGEST, Action.ALLOW)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.HELD and hold.origin is Origin.MANUAL
    assert move_kinds(store) == [("quarantine", "user:alice", MoveOutcome.RUNNING)]


def test_a_policy_hold_released_automatically_is_quarantined_again_by_a_new_decision(
    settings: Settings, store: Store, image: str
) -> None:
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    enforce_decision(settings, store, REPO, DIGEST, Action.ALLOW)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.move_id is not None
    checkpoint(store, REPO, DIGEST, hold.move_id, state=HoldState.RELEASED)
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.PRESERVING and hold.kind is MoveKind.QUARANTINE


def test_requests_that_do_not_fit_are_refused_with_a_reason(
    settings: Settings, store: Store, redis_conn: redis.Redis, image: str
) -> None:
    with pytest.raises(UnknownImage, match="no record"):
        request_move(settings, store, redis_conn, REPO, digest_of("never"), MoveKind.QUARANTINE, ALICE, "x")
    with pytest.raises(ActionRefused, match="not held"):
        request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.RELEASE, ALICE, "x")
    with pytest.raises(ActionRefused, match="reason is required"):
        request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.QUARANTINE, ALICE, "  ")
    with pytest.raises(ValueError, match="digest"):
        request_move(settings, store, redis_conn, REPO, "sha256:nope", MoveKind.QUARANTINE, ALICE, "x")  # type: ignore[arg-type]
    ticket = request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.QUARANTINE, ALICE, "x")
    checkpoint(store, REPO, DIGEST, ticket.move_id, state=HoldState.RELEASED)
    with pytest.raises(ActionRefused, match="already released"):
        request_move(settings, store, redis_conn, REPO, DIGEST, MoveKind.RELEASE, ALICE, "x")
    assert get_hold(store, REPO, DIGEST) is not None


def test_a_redis_outage_keeps_the_move_visible_and_the_reconciler_queues_it(
    settings: Settings, store: Store, redis_conn: redis.Redis, image: str, free_port: int
) -> None:
    down = Settings.from_env({}, redis_url=f"redis://127.0.0.1:{free_port}/0", database_url=settings.database_url)

    enforce_decision(down, store, REPO, DIGEST, Action.QUARANTINE)  # logs, does not raise, does not drop

    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.PRESERVING
    assert hold.error is not None and "not queued yet" in hold.error and "reconciler" in hold.error
    assert push_jobs(redis_conn) == []
    with pytest.raises(QueueUnavailable):
        request_move(
            down,
            store,
            redis.Redis.from_url(down.redis_url, socket_connect_timeout=1),
            REPO,
            DIGEST,
            MoveKind.QUARANTINE,
            ALICE,
            "a person insists",
        )
    assert [k for k, _, _ in move_kinds(store)] == ["quarantine", "quarantine"]

    assert resume_moves(settings, store, redis_conn) == [f"{REPO}@{DIGEST}"]
    assert push_jobs(redis_conn) == [move_job_id(REPO, DIGEST)]
    assert resume_moves(settings, store, redis_conn) == []  # the job is live: not queued twice


def test_a_stale_move_cannot_write_over_the_current_one(settings: Settings, store: Store, image: str) -> None:
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    first = get_hold(store, REPO, DIGEST)
    assert first is not None and first.move_id is not None
    enforce_decision(settings, store, REPO, DIGEST, Action.ALLOW)
    with pytest.raises(Superseded):
        checkpoint(store, REPO, DIGEST, first.move_id, state=HoldState.HELD, plan={"tags": ["v1"]})
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.RELEASING and "tags" not in hold.plan


@dataclass
class FakeJob:
    """The attributes of an rq job the failure callback reads."""

    args: list[Any]
    retries_left: int = 0
    id: str = "move-x"
    meta: dict[str, Any] = field(default_factory=dict)


def test_a_move_whose_retries_ran_out_is_recorded_and_left_for_the_reconciler(
    settings: Settings, store: Store, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TOLLGATE_REDIS_URL", settings.redis_url)
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.move_id is not None
    error = ConnectionError("registry down")

    on_move_failed(FakeJob([REPO, DIGEST, hold.move_id], retries_left=2), None, ConnectionError, error, None)
    assert move_kinds(store)[-1][2] is MoveOutcome.RUNNING  # rq retries: only the error shows
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.error is not None and "will retry" in hold.error

    on_move_failed(FakeJob([REPO, DIGEST, hold.move_id]), None, ConnectionError, error, None)
    assert move_kinds(store)[-1][2] is MoveOutcome.FAILED
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.state is HoldState.PRESERVING  # still owed: the reconciler resumes it
    assert hold.error is not None and "gave up for now" in hold.error
    failed = audit.events(store, target=f"{REPO}@{DIGEST}", action="quarantine.failed")
    assert len(failed) == 1 and failed[0].actor == str(SYSTEM_ACTOR)


def test_the_record_carries_the_hold_and_it_matches_the_contract(settings: Settings, store: Store, image: str) -> None:
    import yaml

    from tests.unit.test_api import make_app

    document = yaml.safe_load(OPENAPI_PATH.read_text())

    client: FlaskClient = make_app(store).test_client()
    assert client.get(f"/api/v1/images/{REPO}@{DIGEST}").get_json()["quarantine"] is None
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.move_id is not None
    placeholder = digest_of("placeholder")
    checkpoint(
        store,
        REPO,
        DIGEST,
        hold.move_id,
        state=HoldState.HELD,
        plan={
            "preserved": True,
            "copy_tag": copy_tag(DIGEST),
            "tags": ["v1"],
            "placeholder": placeholder,
            "placeholders": [placeholder],
            "skipped_tags": [{"tag": "v2", "digest": digest_of("other"), "why": "re-pushed"}],
            "mode": "deleted",
            "mode_reason": "nothing else needs it",
            "deleted": [DIGEST],
            "kept": [],
        },
    )
    record = client.get(f"/api/v1/images/{REPO}@{DIGEST}").get_json()
    validator_for(document, "ImageRecord").validate(record)
    summary = record["quarantine"]
    assert summary == hold_summary(store, REPO, DIGEST)
    assert summary["copy"] == f"quarantine/{REPO}@{DIGEST}" and summary["copy_tag"] == copy_tag(DIGEST)
    assert summary["tags"] == [{"tag": "v1", "placeholder": placeholder}]
    assert summary["moves"][0]["kind"] == "quarantine" and summary["moves"][0]["outcome"] == "running"
    listing = client.get("/api/v1/images").get_json()
    validator_for(document, "ImageList").validate(listing)
    assert listing["images"][0]["quarantine"]["state"] == "held"
    assert placeholder_digests(store, REPO) == {placeholder}
    assert placeholder_digests(store, "team/other") == frozenset()


def test_the_copy_tag_never_looks_like_a_signature_or_referrers_tag() -> None:
    from workers.domain import is_tag
    from workers.signatures.discovery import subject_of_tag

    sha256 = digest_of("x")
    assert copy_tag(sha256) == "held-sha256-" + sha256.split(":")[1]
    assert subject_of_tag(copy_tag(sha256)) is None
    long = "sha512:" + "ab" * 64
    assert is_tag(copy_tag(long)) and len(copy_tag(long)) == 128


def test_the_webhook_recognises_a_placeholder_push_and_does_not_vet_it(
    redis_url: str, tmp_path: Path, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service
    from service import create_app

    monkeypatch.setattr(service, "current_ruleset", lambda _settings: "rules-test-1")
    database_url = f"sqlite:///{tmp_path / 'hook.db'}"
    app = create_app(make_settings(redis_url, database_url))
    store = Store(database_url)
    store.record_push(REPO, DIGEST, tag="v1", media_type=None)
    store.save_report(make_report(REPO, DIGEST, verdict=Verdict.MALICIOUS))
    settings = Settings.from_env({}, redis_url=redis_url, database_url=database_url)
    enforce_decision(settings, store, REPO, DIGEST, Action.QUARANTINE)
    hold = get_hold(store, REPO, DIGEST)
    assert hold is not None and hold.move_id is not None
    placeholder = digest_of("placeholder")
    checkpoint(store, REPO, DIGEST, hold.move_id, plan={"placeholder": placeholder, "placeholders": [placeholder]})
    before = push_jobs(redis_conn)

    response = post(app.test_client(), envelope(push_event(REPO, placeholder, tag="v1")))

    assert response.status_code == 202
    assert response.get_json()["events"][0]["outcome"] == "ignored:quarantine placeholder"
    assert push_jobs(redis_conn) == before  # nothing queued for it
    assert store.get_record(REPO, placeholder) is None
    assert store.tags_of(REPO, DIGEST) == ("v1",)  # the tag stays the quarantined image's
    store.close()
