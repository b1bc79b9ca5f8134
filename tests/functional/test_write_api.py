"""Every write route through the real app, store (SQLite and PostgreSQL) and Redis: auth, CSRF, reason, input.

Each route in ROUTES is checked for: no credential (401), a too-weak role (403), revoked, expired and
garbage tokens (401), a session POST without or with a wrong CSRF token (403) and with the right one (ok),
a missing or blank reason (400), bad input (unknown fields, wrong types, non-JSON, huge bodies), and that
the happy path is audited with the credential's actor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis
import yaml
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.serializers import JSONSerializer

from service.webhook import REDIS_EXTENSION, SETTINGS_EXTENSION
from tests.support.accounts import OPERATOR, app_store, auth_settings, bearer, build_app, csrf, login, token, user
from tests.support.storage import digest_of, make_report
from workers import accounts, audit
from workers.audit import AuditAction
from workers.domain import MoveKind, Role
from workers.queue import RESCAN_QUEUE, scan_job_id
from workers.store import Store

pytestmark = pytest.mark.functional

REPO = "team/app"
DIGEST = digest_of("manifest")  # decided, not held
HELD = digest_of("held")  # quarantined by a person in the fixture, so it can be released
RULE = "miner.xmrig-config-0"
POLICY = "version: 1\ndefault:\n  block_categories: [pua]\n"
REASON = "checked by hand: the finding is a test fixture"
HUGE = 2 * 1024 * 1024


@dataclass(frozen=True)
class World:
    """The app with an image, a held image and an active waiver in its store."""

    app: Flask
    store: Store
    waiver_id: int

    def client(self) -> FlaskClient:
        return self.app.test_client()


@dataclass(frozen=True)
class Route:
    """One write route: where, who may, a valid body, what success answers and what it audits."""

    name: str
    path: Callable[[World], str]
    role: Role
    body: dict[str, Any]
    ok: int
    action: AuditAction
    target: Callable[[World], str]  # the audit target (a prefix of it for the policy, whose version id varies)


ROUTES = [
    Route(
        "release",
        lambda w: f"/api/v1/images/{REPO}@{HELD}/release",
        Role.SECURITY,
        {"reason": REASON},
        202,
        AuditAction.RELEASE,
        lambda w: f"{REPO}@{HELD}",
    ),
    Route(
        "quarantine",
        lambda w: f"/api/v1/images/{REPO}@{DIGEST}/quarantine",
        Role.SECURITY,
        {"reason": REASON},
        202,
        AuditAction.QUARANTINE,
        lambda w: f"{REPO}@{DIGEST}",
    ),
    Route(
        "rescan",
        lambda w: f"/api/v1/images/{REPO}@{DIGEST}/rescan",
        Role.DEVELOPER,
        {"reason": REASON},
        202,
        AuditAction.RESCAN,
        lambda w: f"{REPO}@{DIGEST}",
    ),
    Route(
        "waiver-create",
        lambda w: "/api/v1/waivers",
        Role.SECURITY,
        {"rule": RULE, "reason": REASON, "expires_in_days": 30, "repository_pattern": "team/*"},
        201,
        AuditAction.WAIVER_CREATE,
        lambda w: f"waiver:{w.waiver_id + 1}",
    ),
    Route(
        "waiver-revoke",
        lambda w: f"/api/v1/waivers/{w.waiver_id}/revoke",
        Role.SECURITY,
        {"reason": REASON},
        200,
        AuditAction.WAIVER_REVOKE,
        lambda w: f"waiver:{w.waiver_id}",
    ),
    Route(
        "policy",
        lambda w: "/api/v1/policy",
        Role.SECURITY,
        {"text": POLICY, "reason": REASON},
        201,
        AuditAction.POLICY_CHANGE,
        lambda w: "policy:",
    ),
]
ROUTE_IDS = [route.name for route in ROUTES]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> World:
    from workers.quarantine.jobs import request_move
    from workers.waivers import create_waiver

    app = build_app(monkeypatch, auth_settings(redis_url, database_url))
    store = app_store(app)
    for digest in (DIGEST, HELD):
        store.record_push(REPO, digest, tag=None, media_type="application/vnd.oci.image.manifest.v1+json")
        store.save_report(make_report(REPO, digest))
    conn = app.extensions[REDIS_EXTENSION]
    request_move(app.extensions[SETTINGS_EXTENSION], store, conn, REPO, HELD, MoveKind.QUARANTINE, OPERATOR, "held")
    waiver = create_waiver(
        store, OPERATOR, rule=RULE, reason="fixture waiver", expires_at=store.now() + timedelta(days=3)
    )
    return World(app=app, store=store, waiver_id=waiver.id)


def route_events(world: World, route: Route) -> list[audit.AuditEvent]:
    """The audit records the route's action wrote about its target, beyond what the fixture wrote."""
    return [
        e
        for e in audit.events(world.store, action=route.action.value, target_prefix=route.target(world))
        if e.actor != str(OPERATOR)
    ]


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "reason"}
    return body


# -- authentication and authorization ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_no_credential_is_401(world: World, route: Route) -> None:
    response = world.client().post(route.path(world), json=route.body)
    error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tollgate"'
    assert route_events(world, route) == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_weaker_role_is_403(world: World, route: Route) -> None:
    weaker = [Role.VIEWER] + ([Role.DEVELOPER] if route.role is Role.SECURITY else [])
    for role in weaker:
        response = world.client().post(route.path(world), json=route.body, headers=bearer(token(world.store, role)))
        assert f"needs the {route.role.value} role" in error(response, 403)["reason"]
    assert route_events(world, route) == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("kind", ["revoked", "expired", "garbage", "wrong-secret", "not-bearer"])
def test_unusable_tokens_are_401(world: World, route: Route, kind: str) -> None:
    store = world.store
    created = accounts.create_token(store, OPERATOR, role=Role.SECURITY, expires_in=timedelta(days=1))
    header = bearer(created.token)
    if kind == "revoked":
        accounts.revoke_token(store, OPERATOR, created.info.token_id, reason="leaked")
    elif kind == "expired":
        start = store.now()
        store.now = lambda: start + timedelta(days=1, minutes=1)
    elif kind == "garbage":
        header = bearer("not-a-token")
    elif kind == "wrong-secret":
        header = bearer(created.token[:-4] + ("AAAA" if not created.token.endswith("AAAA") else "BBBB"))
    else:
        header = {"Authorization": f"Token {created.token}"}
    error(world.client().post(route.path(world), json=route.body, headers=header), 401)
    assert route_events(world, route) == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_session_posts_need_the_csrf_token(world: World, route: Route) -> None:
    user(world.store, "alice", Role.SECURITY)
    client = world.client()
    assert login(client, "alice").status_code == 303
    assert "CSRF" in error(client.post(route.path(world), json=route.body), 403)["reason"]
    wrong = {"X-CSRF-Token": "forged-token"}
    assert "CSRF" in error(client.post(route.path(world), json=route.body, headers=wrong), 403)["reason"]
    assert route_events(world, route) == []
    response = client.post(route.path(world), json=route.body, headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == route.ok, response.get_data(as_text=True)
    [event] = route_events(world, route)
    assert event.actor == "user:alice" and event.actor_role == "security"


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_the_happy_path_is_audited_with_the_token(world: World, route: Route) -> None:
    header = bearer(token(world.store, Role.SECURITY, name="sec-bot"))
    response = world.client().post(route.path(world), json=route.body, headers=header)
    assert response.status_code == route.ok, response.get_data(as_text=True)
    [event] = route_events(world, route)
    assert event.actor == "token:sec-bot" and event.actor_role == "security"
    assert event.reason == REASON


# -- reason and input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_reason_is_required(world: World, route: Route) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    without = {k: v for k, v in route.body.items() if k != "reason"}
    assert error(client.post(route.path(world), json=without, headers=header), 400)["reason"] == "reason is required"
    for blank in ("", "   ", "\n\t"):
        response = client.post(route.path(world), json={**route.body, "reason": blank}, headers=header)
        assert "reason" in error(response, 400)["reason"]
    response = client.post(route.path(world), json={**route.body, "reason": "x" * 2001}, headers=header)
    assert "longer than 2000" in error(response, 400)["reason"]
    response = client.post(route.path(world), json={**route.body, "reason": "bell\x07"}, headers=header)
    assert "control characters" in error(response, 400)["reason"]
    assert route_events(world, route) == []


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_bad_input_is_refused_with_a_clear_error(world: World, route: Route) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    path = route.path(world)
    response = client.post(path, json={**route.body, "surprise": 1}, headers=header)
    assert "unknown field(s): surprise" in error(response, 400)["reason"]
    response = client.post(path, json={**route.body, "reason": 5}, headers=header)
    assert error(response, 400)["reason"] == "reason must be a string"
    response = client.post(path, json=[route.body], headers=header)
    assert error(response, 400)["reason"] == "the body must be a JSON object"
    response = client.post(path, data=b"{not json", content_type="application/json", headers=header)
    assert "not JSON" in error(response, 400)["reason"]
    response = client.post(path, data=b"\xff\xfe", content_type="application/json", headers=header)
    assert "not JSON" in error(response, 400)["reason"]
    response = client.post(path, data=json.dumps(route.body), content_type="text/plain", headers=header)
    error(response, 415)
    response = client.post(path, headers=header)
    error(response, 415)
    response = client.post(path, json={**route.body, "reason": "x" * HUGE}, headers=header)
    error(response, 413)
    assert route_events(world, route) == []


# -- image routes ------------------------------------------------------------------------------------------------

IMAGE_ROUTES = [r for r in ROUTES if r.path(World(None, None, 0)).startswith("/api/v1/images/")]  # type: ignore[arg-type]


@pytest.mark.parametrize("route", IMAGE_ROUTES, ids=[r.name for r in IMAGE_ROUTES])
@pytest.mark.parametrize(
    "ref",
    [f"{REPO}:1.0", f"{REPO}@sha256:abc", f"Team/App@{DIGEST}", f"{REPO}@{DIGEST}x", "@" + DIGEST],
)
def test_a_bad_reference_is_400(world: World, route: Route, ref: str) -> None:
    verb = route.name
    header = bearer(token(world.store, Role.SECURITY))
    response = world.client().post(f"/api/v1/images/{ref}/{verb}", json=route.body, headers=header)
    assert error(response, 400)["error"] == "bad reference"


@pytest.mark.parametrize("route", IMAGE_ROUTES, ids=[r.name for r in IMAGE_ROUTES])
def test_an_unknown_image_is_404(world: World, route: Route) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    unknown = digest_of("never pushed")
    response = world.client().post(f"/api/v1/images/{REPO}@{unknown}/{route.name}", json=route.body, headers=header)
    assert error(response, 404)["error"] == "not found"


def test_release_of_an_image_not_held_is_409(world: World) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    response = world.client().post(f"/api/v1/images/{REPO}@{DIGEST}/release", json={"reason": REASON}, headers=header)
    assert "not held" in error(response, 409)["reason"]


def test_rescan_is_limited_to_the_developers_repositories(world: World) -> None:
    conn: redis.Redis = world.app.extensions[REDIS_EXTENSION]
    path = f"/api/v1/images/{REPO}@{DIGEST}/rescan"
    outside = bearer(token(world.store, Role.DEVELOPER, name="other-dev", repositories=["other/*", "team/app2"]))
    response = world.client().post(path, json={"reason": REASON}, headers=outside)
    assert "limited to other/*, team/app2" in error(response, 403)["reason"]
    inside = bearer(token(world.store, Role.DEVELOPER, name="team-dev", repositories=["team/*"]))
    response = world.client().post(path, json={"reason": REASON}, headers=inside)
    assert response.status_code == 202
    body = response.get_json()
    job_id = scan_job_id(REPO, DIGEST, "rules-test-1")
    assert body["job_id"] == job_id and body["queued"] is True
    assert Queue(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids() == [job_id]
    record = world.store.get_record(REPO, DIGEST)
    assert record is not None and record.status.value == "queued"
    again = world.client().post(path, json={"reason": REASON}, headers=inside).get_json()
    assert again["queued"] is False  # the same job is still waiting
    events = audit.events(world.store, action=AuditAction.RESCAN.value)
    assert [e.actor for e in events] == ["token:team-dev", "token:team-dev"]
    assert events[0].details["job_id"] == job_id


def test_a_scoped_security_token_acts_in_scope_but_not_globally(world: World) -> None:
    scoped = bearer(token(world.store, Role.SECURITY, repositories=["team/*"]))
    client = world.client()
    response = client.post(f"/api/v1/images/{REPO}@{DIGEST}/quarantine", json={"reason": REASON}, headers=scoped)
    assert response.status_code == 202
    for route in (r for r in ROUTES if r.name in {"waiver-create", "waiver-revoke", "policy"}):
        response = client.post(route.path(world), json=route.body, headers=scoped)
        assert "limited to some repositories" in error(response, 403)["reason"]


def test_the_move_ticket_is_answered(world: World) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    response = world.client().post(
        f"/api/v1/images/{REPO}@{DIGEST}/quarantine", json={"reason": REASON}, headers=header
    )
    body = response.get_json()
    assert response.status_code == 202 and body["kind"] == "quarantine"
    assert isinstance(body["move_id"], int) and body["job_id"]


# -- waivers and policy ------------------------------------------------------------------------------------------


def test_waiver_fields_are_validated(world: World) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    base = {"rule": RULE, "reason": REASON}
    cases = [
        ({**base}, "exactly one of expires_at"),
        ({**base, "expires_in_days": 3, "expires_at": "2030-01-01T00:00:00Z"}, "exactly one of expires_at"),
        ({**base, "expires_at": "tomorrow"}, "not an ISO 8601 time"),
        ({**base, "expires_at": "2030-01-01T00:00:00"}, "needs a time zone"),
        ({**base, "expires_in_days": "3"}, "expires_in_days must be an integer"),
        ({**base, "expires_in_days": True}, "expires_in_days must be an integer"),
        ({**base, "expires_in_days": 0}, "expires_in_days must be an integer"),
        ({**base, "expires_in_days": 3, "digest": "sha256:nope"}, "not a valid digest"),
        ({**base, "expires_in_days": 3, "rule": "NOT A RULE"}, "not a rule id"),
        ({"reason": REASON, "expires_in_days": 3}, "rule is required"),
        ({**base, "expires_in_days": 400}, "TOLLGATE_WAIVER_MAX_DAYS"),
    ]
    for body, message in cases:
        response = client.post("/api/v1/waivers", json=body, headers=header)
        assert message in error(response, 400)["reason"], body


def test_waivers_are_listed_and_revocation_conflicts(world: World) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    listed = client.get("/api/v1/waivers").get_json()["waivers"]
    assert [w["id"] for w in listed] == [world.waiver_id]
    path = f"/api/v1/waivers/{world.waiver_id}/revoke"
    assert client.post(path, json={"reason": REASON}, headers=header).status_code == 200
    assert error(client.post(path, json={"reason": REASON}, headers=header), 409)
    assert error(client.post("/api/v1/waivers/99999/revoke", json={"reason": REASON}, headers=header), 404)
    assert client.get("/api/v1/waivers").get_json()["waivers"] == []
    everything = client.get("/api/v1/waivers?include_inactive=true").get_json()["waivers"]
    assert [w["id"] for w in everything] == [world.waiver_id]
    assert error(client.get("/api/v1/waivers?include_inactive=yes"), 400)


def test_an_invalid_policy_is_refused_with_diagnostics(world: World) -> None:
    header = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    response = client.post("/api/v1/policy", json={"text": "version: 1\nnope: 1\n", "reason": REASON}, headers=header)
    assert "nope: unknown key" in error(response, 400)["reason"]
    response = client.post("/api/v1/policy", json={"text": 7, "reason": REASON}, headers=header)
    assert error(response, 400)["reason"] == "text must be a string"
    assert client.post("/api/v1/policy", json={"text": POLICY, "reason": REASON}, headers=header).status_code == 201
    current = client.get("/api/v1/policy").get_json()["policy"]
    assert current["text"] == POLICY and current["actor"].startswith("token:")
    history = client.get("/api/v1/policy/history").get_json()["versions"]
    assert history[0]["text"] == POLICY


# -- browser forms -----------------------------------------------------------------------------------------------


def test_browser_forms_need_a_login_the_role_and_csrf(world: World) -> None:
    store = world.store
    user(store, "dev", Role.DEVELOPER)
    user(store, "alice", Role.SECURITY)
    path = f"/images/{REPO}@{DIGEST}/quarantine"
    anonymous = world.client()
    response = anonymous.post(path, data={"reason": REASON})
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=")

    developer = world.client()
    login(developer, "dev")
    response = developer.post(path, data={"reason": REASON, "csrf_token": csrf(developer)})
    assert response.status_code == 403 and b"needs the security role" in response.data

    alice = world.client()
    login(alice, "alice")
    assert alice.post(path, data={"reason": REASON}).status_code == 403
    assert alice.post(path, data={"reason": REASON, "csrf_token": "forged"}).status_code == 403
    response = alice.post(path, data={"reason": "  ", "csrf_token": csrf(alice)})
    assert response.status_code == 400 and b"reason must not be blank" in response.data
    response = alice.post(path, data={"csrf_token": csrf(alice)})
    assert response.status_code == 400 and b"reason is required" in response.data
    response = alice.post(path, data={"reason": REASON, "extra": "1", "csrf_token": csrf(alice)})
    assert response.status_code == 400 and b"unknown field" in response.data
    response = alice.post(path, data={"reason": REASON, "csrf_token": csrf(alice)})
    assert response.status_code == 303 and response.headers["Location"] == f"/images/{REPO}@{DIGEST}"
    page = alice.get(response.headers["Location"])
    assert page.status_code == 200 and b"Quarantine requested" in page.data
    [event] = audit.events(store, action=AuditAction.QUARANTINE.value, target=f"{REPO}@{DIGEST}")
    assert event.actor == "user:alice" and event.reason == REASON


def test_browser_release_and_rescan_forms(world: World) -> None:
    user(world.store, "alice", Role.SECURITY)
    alice = world.client()
    login(alice, "alice")
    response = alice.post(f"/images/{REPO}@{HELD}/release", data={"reason": REASON, "csrf_token": csrf(alice)})
    assert response.status_code == 303
    response = alice.post(f"/images/{REPO}@{DIGEST}/rescan", data={"reason": REASON, "csrf_token": csrf(alice)})
    assert response.status_code == 303
    page = alice.get(f"/images/{REPO}@{DIGEST}")
    assert b"Rescan queued" in page.data and b"rescan" in page.data
    response = alice.post(f"/images/{REPO}@{HELD}/release", data={"reason": REASON, "csrf_token": csrf(alice)})
    assert response.status_code in {303, 409}
    unknown = alice.post(
        f"/images/{REPO}@{digest_of('nope')}/rescan", data={"reason": REASON, "csrf_token": csrf(alice)}
    )
    assert unknown.status_code == 404 and b"no record" in unknown.data
    actors = {e.actor for e in audit.events(world.store, actor="user:alice")}
    assert actors == {"user:alice"}


def test_the_image_page_offers_only_what_the_role_allows(world: World) -> None:
    user(world.store, "dev", Role.DEVELOPER)
    client = world.client()
    anonymous = client.get(f"/images/{REPO}@{DIGEST}")
    assert anonymous.status_code == 200 and b"Log in" in anonymous.data and b"Reason to" not in anonymous.data
    login(client, "dev")
    page = client.get(f"/images/{REPO}@{DIGEST}").data
    assert b"Reason to rescan" in page and b"Reason to release" not in page and b"Reason to quarantine" not in page
    assert client.get("/images/team/app:nope").status_code == 404
    assert client.get("/images/BAD@x").status_code == 400


# -- the audit trail API -----------------------------------------------------------------------------------------


def test_audit_filters_paging_and_export(world: World) -> None:
    viewer = bearer(token(world.store, Role.VIEWER, name="reader"))
    client = world.client()
    everything = audit.events(world.store, limit=1000)
    assert [e.action for e in everything] == ["quarantine", "waiver.create", "token.create"]
    first = client.get("/api/v1/audit?limit=2", headers=viewer).get_json()
    assert [e["id"] for e in first["events"]] == [e.id for e in everything[:2]]
    rest = client.get(f"/api/v1/audit?limit=1000&after_id={first['next_after_id']}", headers=viewer).get_json()
    assert [e["id"] for e in rest["events"]] == [e.id for e in everything[2:]] and rest["next_after_id"] is None
    quarantines = client.get("/api/v1/audit?action=quarantine", headers=viewer).get_json()["events"]
    assert {e["target"] for e in quarantines} == {f"{REPO}@{HELD}"}
    by_prefix = client.get(f"/api/v1/audit?target_prefix={REPO}@", headers=viewer).get_json()["events"]
    assert by_prefix and all(e["target"].startswith(f"{REPO}@") for e in by_prefix)
    since = client.get("/api/v1/audit?since=2999-01-01T00:00:00Z", headers=viewer).get_json()["events"]
    assert since == []

    exported = client.get("/api/v1/audit.jsonl", headers=viewer)
    assert exported.status_code == 200 and exported.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
    assert [line["id"] for line in lines] == [e["id"] for e in first["events"] + rest["events"]]
    same = client.get("/api/v1/audit?format=jsonl&action=token.create", headers=viewer).get_data(as_text=True)
    assert [json.loads(line)["action"] for line in same.splitlines()] == ["token.create"]

    for query in (
        "limit=0",
        "action=nope",
        "limit=x",
        "limit=5000",
        "since=yesterday",
        "since=2026-01-01T00:00:00",
        "x=1",
        "format=xml",
    ):
        assert error(client.get(f"/api/v1/audit?{query}", headers=viewer), 400), query
    assert error(client.get("/api/v1/audit.jsonl?limit=3", headers=viewer), 400)
    error(client.get("/api/v1/audit.jsonl"), 401)


def test_the_audit_page_needs_a_viewer(world: World) -> None:
    user(world.store, "vera", Role.VIEWER)
    client = world.client()
    response = client.get("/audit")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=/audit")
    login(client, "vera")
    page = client.get("/audit")
    assert page.status_code == 200 and b"waiver.create" in page.data


# -- the OpenAPI contract ----------------------------------------------------------------------------------------


def test_every_write_route_is_documented_and_answers_validate(world: World) -> None:
    import re

    from tests.unit.test_openapi import OPENAPI_PATH, validator_for

    document = yaml.safe_load(OPENAPI_PATH.read_text())
    served = set()
    for rule in world.app.url_map.iter_rules():
        if rule.endpoint.startswith("actions."):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            served |= {(path, m.lower()) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served and served <= documented, served - documented

    security = bearer(token(world.store, Role.SECURITY))
    client = world.client()
    answers = {
        "RescanTicket": client.post(
            f"/api/v1/images/{REPO}@{DIGEST}/rescan", json={"reason": REASON}, headers=security
        ),
        "MoveTicket": client.post(
            f"/api/v1/images/{REPO}@{DIGEST}/quarantine", json={"reason": REASON}, headers=security
        ),
        "WaiverResult": client.post("/api/v1/waivers", json=ROUTES[3].body, headers=security),
        "AuditPage": client.get("/api/v1/audit", headers=security),
        "Error": client.post(f"/api/v1/images/{REPO}@{DIGEST}/rescan", json={}, headers=security),
    }
    for schema, response in answers.items():
        assert response.status_code < 500, response.get_data(as_text=True)
        validator_for(document, schema).validate(response.get_json())
    for waiver in client.get("/api/v1/waivers").get_json()["waivers"]:
        validator_for(document, "Waiver").validate(waiver)
    client.post("/api/v1/policy", json={"text": POLICY, "reason": REASON}, headers=security)
    validator_for(document, "PolicyVersion").validate(client.get("/api/v1/policy").get_json()["policy"])
    bad = validator_for(document, "AuditEvent")
    event = client.get("/api/v1/audit", headers=security).get_json()["events"][0]
    assert not bad.is_valid({**event, "surprise": 1}) and not bad.is_valid({**event, "hash": "x"})
