"""Waivers against real databases and a real Redis: validation, scope, decision-time marks, revocation, expiry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tests.support.storage import digest_of, make_finding, make_report
from workers import audit
from workers.domain import Actor, ActorKind, Finding, Role, Verdict
from workers.errors import ActionRefused
from workers.policy import decide
from workers.queue import RESCAN_QUEUE, redecision_job_id, waiver_expiry_job_id
from workers.reconcile import decision_sweep
from workers.settings import Settings
from workers.store import Store
from workers.waivers import (
    Waiver,
    active_waivers,
    apply_waivers,
    create_waiver,
    expire_due_waivers,
    get_waiver,
    list_waivers,
    path_glob,
    revoke_waiver,
    schedule_redecisions,
)

REPO = "team/app"
ALICE = Actor(ActorKind.USER, "alice", Role.SECURITY)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULE = "miner.xmrig-config-0"


class FakeClock:
    """Time that moves only when told to."""

    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def clock(store: Store) -> FakeClock:
    fake = FakeClock()
    store.now = fake
    return fake


@pytest.fixture
def settings(redis_url: str, database_url: str) -> Settings:
    return Settings(redis_url=redis_url, database_url=database_url, job_retries=0)


def _waiver(store: Store, **overrides: Any) -> Waiver:
    values: dict[str, Any] = {
        "rule": RULE,
        "reason": "the config ships with our benchmark tooling (SEC-1234)",
        "expires_at": store.now() + timedelta(days=30),
        "max_days": 365,
    }
    values.update(overrides)
    return create_waiver(store, ALICE, **values)


def _bare(rule: str = RULE, path: str | None = "/opt/x/config-0.json") -> Finding:
    return make_finding(0, rule=rule, path=path)


# -- creation and validation --------------------------------------------------------------------------------------


def test_a_waiver_is_stored_listed_and_audited(store: Store, clock: FakeClock) -> None:
    waiver = _waiver(store, repository_pattern="team/**", path_pattern="/opt/**/config-*.json")
    assert waiver.id > 0 and waiver.rule == RULE and waiver.created_by == "user:alice"
    assert waiver.created_at == START and waiver.expires_at == START + timedelta(days=30)
    assert get_waiver(store, waiver.id) == waiver
    assert list_waivers(store) == [waiver] == active_waivers(store, START)
    (event,) = audit.events(store, action="waiver.create")
    assert event.actor == "user:alice" and event.actor_role == "security"
    assert event.target == f"waiver:{waiver.id}"
    assert event.reason == "the config ships with our benchmark tooling (SEC-1234)"
    assert event.details["rule"] == RULE and event.details["repository_pattern"] == "team/**"
    assert event.details["expires_at"] == "2026-03-31T12:00:00Z" and event.details["state"] == "active"
    assert waiver.to_json(START)["state"] == "active"


def test_the_reason_is_stored_stripped(store: Store, clock: FakeClock) -> None:
    assert _waiver(store, reason="  accepted risk: lab image  ").reason == "accepted risk: lab image"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"reason": ""}, "a reason is required"),
        ({"reason": "   \n\t "}, "a reason is required"),
        ({"reason": "ok"}, "too short"),
        ({"reason": "x" * 100_000}, "reason is too long"),
        ({"reason": "fine\x1b[2J reason"}, "control characters"),
        ({"reason": 42}, "reason must be text"),
        ({"expires_at": None}, "an expiry (expires_at) is required"),
        ({"expires_at": START - timedelta(seconds=1)}, "is not in the future"),
        ({"expires_at": START}, "is not in the future"),
        ({"expires_at": START + timedelta(days=366)}, "more than 365 days ahead"),
        ({"expires_at": datetime(2026, 4, 1, 12, 0)}, "must carry a time zone"),
        ({"expires_at": "2026-04-01T00:00:00Z"}, "must be a date and time"),
        ({"rule": ""}, "a rule id is required"),
        ({"rule": "Miner.Xmrig"}, "is not a rule id"),
        ({"rule": "xmrig"}, "is not a rule id"),
        ({"rule": "miner.xmrig config"}, "is not a rule id"),
        ({"rule": "../../etc/passwd"}, "is not a rule id"),
        ({"rule": "miner.*"}, "is not a rule id"),
        ({"rule": "a." + "b" * 10_000}, "rule is too long"),
        ({"rule": None}, "rule must be text"),
        ({"repository_pattern": "Team/*"}, "repository pattern 'Team/*' has 'T'"),
        ({"repository_pattern": "team//app"}, "empty path component"),
        ({"repository_pattern": "team/**x"}, "'**' must be a whole path component"),
        ({"repository_pattern": ""}, "must not be empty"),
        ({"repository_pattern": "a" * 300}, "repository pattern is too long"),
        ({"repository_pattern": "team/[ab]"}, "has '['"),
        ({"digest": "sha256:abc"}, "not a valid digest"),
        ({"digest": "md5:" + "0" * 32}, "not a valid digest"),
        ({"digest": "sha256:" + "0" * 10_000}, "digest is too long"),
        ({"path_pattern": "opt/x/*.json"}, "must be an absolute path glob"),
        ({"path_pattern": "/opt//x"}, "empty path component"),
        ({"path_pattern": "/opt/x/"}, "empty path component"),
        ({"path_pattern": "/"}, "empty path component"),
        ({"path_pattern": "/opt/../etc/passwd"}, "'.' or '..'"),
        ({"path_pattern": "/opt/**x/y"}, "'**' must be a whole path component"),
        ({"path_pattern": "/opt/\x00x"}, "control characters"),
        ({"path_pattern": "/" + "a/" * 5000}, "path pattern is too long"),
    ],
)
def test_hostile_or_incomplete_input_is_refused_with_a_clear_message(
    store: Store, clock: FakeClock, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        _waiver(store, **overrides)
    assert message in str(refused.value)
    assert len(str(refused.value)) < 400  # never echoes a huge input back
    assert list_waivers(store, include_inactive=True) == []
    assert audit.events(store, action="waiver.create") == []


def test_the_longest_expiry_comes_from_the_settings(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_WAIVER_MAX_DAYS", "7")
    with pytest.raises(ValueError, match="more than 7 days ahead"):
        _waiver(store, max_days=None, expires_at=START + timedelta(days=8))
    assert _waiver(store, max_days=None, expires_at=START + timedelta(days=7)).expires_at == START + timedelta(days=7)


def test_known_rules_refuse_a_typo_when_given(store: Store, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"no rule 'miner\.xmrig-confg' in the loaded ruleset"):
        _waiver(store, rule="miner.xmrig-confg", known_rules={"miner.xmrig-config"})
    assert _waiver(store, rule="miner.xmrig-config", known_rules={"miner.xmrig-config"}).rule == "miner.xmrig-config"


def test_rule_ids_of_every_origin_are_accepted(store: Store, clock: FakeClock) -> None:
    for rule in ("tollgate.unpack.refused-entry", "names.look-alike", "extra.my_pack-rule", "ioc.kinsing"):
        assert _waiver(store, rule=rule).rule == rule


# -- scope --------------------------------------------------------------------------------------------------------


def _scoped(**scope: Any) -> Waiver:
    return Waiver(
        id=7,
        rule=scope.pop("rule", RULE),
        repository_pattern=scope.pop("repository_pattern", None),
        digest=scope.pop("digest", None),
        path_pattern=scope.pop("path_pattern", None),
        reason="because",
        created_by="user:alice",
        created_at=START,
        expires_at=START + timedelta(days=1),
    )


def test_a_rule_only_waiver_covers_that_rule_everywhere() -> None:
    waiver = _scoped()
    assert waiver.matches("team/app", digest_of("a"), _bare())
    assert waiver.matches("other/x/y", digest_of("b"), _bare(path=None))
    assert not waiver.matches("team/app", digest_of("a"), _bare(rule="miner.xmrig-config-1"))
    assert not waiver.matches("team/app", digest_of("a"), _bare(rule="miner.xmrig-config"))  # no prefix match


@pytest.mark.parametrize(
    ("pattern", "repository", "expected"),
    [
        ("team/*", "team/app", True),
        ("team/*", "team/app/api", False),
        ("team/**", "team/app/api", True),
        ("team/**", "team", False),
        ("team/app", "team/app", True),
        ("team/app", "team/app2", False),
        ("**/cache", "a/b/cache", True),
        ("team/ap?", "team/app", True),
    ],
)
def test_a_repository_glob_narrows_it(pattern: str, repository: str, expected: bool) -> None:
    assert _scoped(repository_pattern=pattern).matches(repository, digest_of("a"), _bare()) is expected


def test_a_digest_narrows_it_to_one_image() -> None:
    waiver = _scoped(digest=digest_of("a"))
    assert waiver.matches("team/app", digest_of("a"), _bare())
    assert waiver.matches("other/app", digest_of("a"), _bare())
    assert not waiver.matches("team/app", digest_of("b"), _bare())


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/opt/x/config-0.json", "/opt/x/config-0.json", True),
        ("/opt/x/*.json", "/opt/x/config-0.json", True),
        ("/opt/*.json", "/opt/x/config-0.json", False),
        ("/opt/**/config-?.json", "/opt/x/config-0.json", True),
        ("/opt/**", "/opt/x/config-0.json", True),
        ("/**/config-0.json", "/opt/x/config-0.json", True),
        ("/opt/x/config-0.json", "/opt/x/config-0.json.bak", False),
        ("/opt/x/config-0.json", None, False),  # a config finding has no path
        ("/opt/x/(a|b).json", "/opt/x/a.json", False),  # regex syntax is literal
        ("/opt/x/(a|b).json", "/opt/x/(a|b).json", True),
    ],
)
def test_a_path_glob_narrows_it(pattern: str, path: str | None, expected: bool) -> None:
    assert _scoped(path_pattern=pattern).matches("team/app", digest_of("a"), _bare(path=path)) is expected


def test_every_narrowing_must_hold() -> None:
    waiver = _scoped(repository_pattern="team/*", digest=digest_of("a"), path_pattern="/opt/**")
    assert waiver.matches("team/app", digest_of("a"), _bare())
    assert not waiver.matches("prod/app", digest_of("a"), _bare())
    assert not waiver.matches("team/app", digest_of("b"), _bare())
    assert not waiver.matches("team/app", digest_of("a"), _bare(path="/usr/bin/x"))


def test_path_glob_compiles_what_it_documents() -> None:
    assert path_glob("/usr/lib/*.so").fullmatch("/usr/lib/libx.so")
    assert not path_glob("/usr/lib/*.so").fullmatch("/usr/lib/x/libx.so")


# -- decision time ------------------------------------------------------------------------------------------------


def test_apply_waivers_marks_without_removing_and_names_the_waiver() -> None:
    waiver = _scoped()
    found = (_bare(), make_finding(1))
    marked = apply_waivers(found, [waiver], REPO, digest_of("a"), START)
    assert len(marked) == 2
    assert marked[0].waived and marked[0].waiver_id == 7
    assert not marked[1].waived and marked[1].waiver_id is None
    assert marked[0].to_json()["waiver_id"] == 7 and marked[0].to_json()["waived"] is True
    decision = decide(marked[:1], REPO)
    assert decision.verdict is Verdict.CLEAN
    assert decision.explanation == f"clean: every finding is waived; waived, not counted: {RULE}"


def test_apply_waivers_ignores_expired_and_revoked_ones_and_clears_stale_marks() -> None:
    stale = (replace(_bare(), waived=True, waiver_id=3),)
    expired = _scoped()
    assert apply_waivers(stale, [expired], REPO, digest_of("a"), START + timedelta(days=1)) == (_bare(),)
    revoked = replace(_scoped(), revoked_at=START, revoked_by="user:bob")
    assert apply_waivers(stale, [revoked], REPO, digest_of("a"), START) == (_bare(),)


def test_the_oldest_matching_waiver_is_the_one_named() -> None:
    first, second = _scoped(), replace(_scoped(), id=9)
    (marked,) = apply_waivers((_bare(),), [first, second], REPO, digest_of("a"), START)
    assert marked.waiver_id == 7


def test_waived_findings_round_trip_through_the_store(store: Store) -> None:
    digest = digest_of("a")
    waived = apply_waivers((_bare(),), [_scoped()], REPO, digest, START)
    store.save_report(make_report(REPO, digest, findings=[*waived, make_finding(1)]))
    record = store.get_record(REPO, digest)
    assert record is not None
    assert [(f.waived, f.waiver_id) for f in record.findings] == [(True, 7), (False, None)]


# -- revocation ---------------------------------------------------------------------------------------------------


def test_revoke_ends_a_waiver_and_is_audited(store: Store, clock: FakeClock) -> None:
    waiver = _waiver(store)
    clock.advance(hours=1)
    revoked = revoke_waiver(
        store, Actor(ActorKind.TOKEN, "sec-bot", Role.SECURITY), waiver.id, "  false positive gone "
    )
    assert revoked.revoked_at == START + timedelta(hours=1) and revoked.revoked_by == "token:sec-bot"
    assert revoked.revoke_reason == "false positive gone"
    assert get_waiver(store, waiver.id) == revoked and not revoked.active(clock.moment)
    assert list_waivers(store) == [] and list_waivers(store, include_inactive=True) == [revoked]
    (event,) = audit.events(store, action="waiver.revoke")
    assert event.target == f"waiver:{waiver.id}" and event.actor == "token:sec-bot"
    assert event.reason == "false positive gone" and event.details["state"] == "revoked"


def test_revoking_twice_an_expired_an_unknown_or_without_reason_is_refused(store: Store, clock: FakeClock) -> None:
    waiver = _waiver(store)
    with pytest.raises(ValueError, match="a reason is required"):
        revoke_waiver(store, ALICE, waiver.id, " ")
    revoke_waiver(store, ALICE, waiver.id, "done with it")
    with pytest.raises(ActionRefused, match="already revoked by user:alice"):
        revoke_waiver(store, ALICE, waiver.id, "again")
    with pytest.raises(LookupError, match="no waiver 999"):
        revoke_waiver(store, ALICE, 999, "who knows")
    short = _waiver(store, expires_at=START + timedelta(hours=1))
    clock.advance(hours=1)
    with pytest.raises(ActionRefused, match="already expired at 2026-03-01T13:00:00Z"):
        revoke_waiver(store, ALICE, short.id, "too late")
    assert len(audit.events(store, action="waiver.revoke")) == 1


# -- re-decisions and expiry ----------------------------------------------------------------------------------------


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def _queued(conn: redis.Redis) -> list[str]:
    return Queue(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()


def test_schedule_redecisions_queues_each_matching_image_once_and_the_expiry(
    store: Store, clock: FakeClock, settings: Settings, conn: redis.Redis
) -> None:
    hit, other_repo, other_path, no_finding = digest_of("hit"), digest_of("o"), digest_of("p"), digest_of("n")
    store.save_report(make_report(REPO, hit, findings=[_bare(), _bare()]))  # two findings, one image
    store.save_report(make_report("prod/app", other_repo, findings=[_bare()]))
    store.save_report(make_report(REPO, other_path, findings=[_bare(path="/usr/bin/x")]))
    store.save_report(make_report(REPO, no_finding, findings=[make_finding(1)]))
    waiver = _waiver(store, repository_pattern="team/*", path_pattern="/opt/**")
    assert schedule_redecisions(settings, store, conn, waiver) == 1
    assert _queued(conn) == [redecision_job_id(REPO, hit, f"waiver-{waiver.id}-created")]
    scheduled = ScheduledJobRegistry(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer)
    assert scheduled.get_job_ids() == [waiver_expiry_job_id(waiver.id, waiver.expires_at)]
    # Asked again (a retried request): nothing new.
    assert schedule_redecisions(settings, store, conn, waiver) == 1
    assert len(_queued(conn)) == 1 and len(scheduled.get_job_ids()) == 1
    revoked = revoke_waiver(store, ALICE, waiver.id, "not needed any more")
    assert schedule_redecisions(settings, store, conn, revoked) == 1
    assert _queued(conn)[-1] == redecision_job_id(REPO, hit, f"waiver-{waiver.id}-revoked")


def test_expiry_is_audited_once_and_re_decides_the_images(
    store: Store, clock: FakeClock, settings: Settings, conn: redis.Redis
) -> None:
    digest = digest_of("hit")
    store.save_report(make_report(REPO, digest, findings=[_bare()]))
    waiver = _waiver(store, expires_at=START + timedelta(days=2))
    kept = _waiver(store, expires_at=START + timedelta(days=5))
    revoked = _waiver(store, expires_at=START + timedelta(days=1))
    revoke_waiver(store, ALICE, revoked.id, "withdrawn early")
    assert expire_due_waivers(settings, store, conn) == []  # nothing expired yet
    clock.advance(days=3)
    assert [w.id for w in expire_due_waivers(settings, store, conn)] == [waiver.id]
    assert expire_due_waivers(settings, store, conn) == []  # a second sweep: already recorded
    (event,) = audit.events(store, action="waiver.expire")
    assert event.actor == "system:tollgate" and event.target == f"waiver:{waiver.id}"
    assert event.reason.startswith("expired at 2026-03-03T12:00:00Z (waived because: the config ships")
    assert event.details["images"] == 1 and event.details["state"] == "expired"
    assert _queued(conn) == [redecision_job_id(REPO, digest, f"waiver-{waiver.id}-expired")]
    assert active_waivers(store, clock.moment) == [kept]


def test_the_reconciler_pass_catches_up_on_changes_and_expiries(
    store: Store, clock: FakeClock, settings: Settings, conn: redis.Redis
) -> None:
    digest = digest_of("hit")
    store.save_report(make_report(REPO, digest, findings=[_bare()]))
    waiver = _waiver(store, expires_at=START + timedelta(days=1))  # as if Redis was down when the API tried
    first = decision_sweep(settings, store, conn)
    assert first == {"waivers_expired": [], "waivers_changed": 1, "policy_redecisions": 0, "sweep_errors": []}
    created = redecision_job_id(REPO, digest, f"waiver-{waiver.id}-created")
    assert _queued(conn) == [created]
    clock.advance(minutes=5)
    # Made at the instant the last pass started: looked at once more (it might have come after the query) …
    assert decision_sweep(settings, store, conn)["waivers_changed"] == 1
    assert _queued(conn) == [created]  # … which queues nothing twice
    clock.advance(minutes=5)
    assert decision_sweep(settings, store, conn)["waivers_changed"] == 0
    clock.advance(days=1)
    assert decision_sweep(settings, store, conn)["waivers_expired"] == [waiver.id]
    assert _queued(conn) == [created, redecision_job_id(REPO, digest, f"waiver-{waiver.id}-expired")]


def test_the_reconciler_pass_reports_a_redis_outage(store: Store, clock: FakeClock, database_url: str) -> None:
    from tests.support.receiver import closed_port

    down = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", database_url=database_url)
    store.save_report(make_report(REPO, digest_of("hit"), findings=[_bare()]))
    waiver = _waiver(store, expires_at=START + timedelta(hours=1))
    clock.advance(hours=2)
    conn = redis.Redis.from_url(down.redis_url, socket_connect_timeout=1)
    out = decision_sweep(down, store, conn)
    assert out["waivers_expired"] == [] and len(out["sweep_errors"]) == 2
    assert out["sweep_errors"][0].startswith("waiver expiry: QueueUnavailable: could not enqueue the re-decision")
    assert audit.events(store, action="waiver.expire") == []  # left for the next pass, not half-done
    assert get_waiver(store, waiver.id) == waiver
