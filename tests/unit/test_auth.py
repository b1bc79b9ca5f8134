"""Credentials through the real app: tokens, login sessions, CSRF, the trusted proxy, anonymous reads."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.auth import safe_next
from tests.support.accounts import (
    OPERATOR,
    PASSWORD,
    app_store,
    auth_settings,
    bearer,
    build_app,
    csrf,
    login,
    token,
    user,
)
from workers import accounts
from workers.audit import AuditAction, events
from workers.domain import Role
from workers.errors import ConfigError
from workers.store import Store

PROXY = "10.9.8.7"
HEADER = "X-Forwarded-User"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> Flask:
    return build_app(monkeypatch, auth_settings(redis_url, database_url))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(app: Flask) -> Store:
    return app_store(app)


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "reason"}
    return body


# -- tokens ------------------------------------------------------------------------------------------------------


def test_the_audit_trail_needs_a_viewer_token(client: FlaskClient, store: Store) -> None:
    response = client.get("/api/v1/audit")
    error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/audit", headers=bearer(token(store, Role.VIEWER))).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer garbage", "Bearer tg_0123456789abcdef_" + "x" * 43, "tg_x"],
)
def test_bad_authorization_is_401_even_where_reads_are_anonymous(client: FlaskClient, header: str) -> None:
    response = client.get("/api/v1/images", headers={"Authorization": header})
    error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="tollgate"'
    assert client.get("/api/v1/images").status_code == 200  # without a credential: anonymous read


def test_revoked_and_expired_tokens_are_refused(client: FlaskClient, store: Store) -> None:
    revoked = accounts.create_token(store, OPERATOR, role=Role.SECURITY)
    accounts.revoke_token(store, OPERATOR, revoked.info.token_id, reason="leaked")
    error(client.get("/api/v1/audit", headers=bearer(revoked.token)), 401)

    expiring = accounts.create_token(store, OPERATOR, role=Role.SECURITY, expires_in=timedelta(days=1))
    assert client.get("/api/v1/audit", headers=bearer(expiring.token)).status_code == 200
    real_now = store.now
    store.now = lambda: real_now() + timedelta(days=1, seconds=1)
    error(client.get("/api/v1/audit", headers=bearer(expiring.token)), 401)


def test_reads_need_a_credential_when_anonymous_reads_are_off(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str
) -> None:
    app = build_app(monkeypatch, auth_settings(redis_url, database_url, anonymous_read=False))
    client = app.test_client()
    store = app_store(app)
    for path in ("/api/v1/images", "/api/v1/images/team/app:1", "/api/v1/waivers", "/api/v1/policy"):
        error(client.get(path), 401)
    assert client.get("/api/v1/health").status_code == 200  # load balancers probe it
    page = client.get("/images/team/app:1")
    assert page.status_code == 303 and page.headers["Location"].startswith("/login?next=/images/team/app")
    viewer = bearer(token(store, Role.VIEWER))
    assert client.get("/api/v1/images", headers=viewer).status_code == 200
    assert client.get("/api/v1/images/team/app:1", headers=viewer).status_code == 404
    # A person logged in reads too.
    user(store, "vera", Role.VIEWER)
    browser = app.test_client()
    assert login(browser, "vera").status_code == 303
    assert browser.get("/api/v1/images").status_code == 200


def test_the_webhook_keeps_its_own_token(client: FlaskClient, store: Store) -> None:
    api_token = token(store, Role.SECURITY)
    body = b'{"events": []}'
    response = client.post("/hooks/registry", data=body, content_type="application/json", headers=bearer(api_token))
    assert response.status_code == 401
    response = client.post(
        "/hooks/registry", data=body, content_type="application/json", headers=bearer("s3cr3t-webhook-token")
    )
    assert response.status_code == 202


# -- login sessions ----------------------------------------------------------------------------------------------


def test_login_sets_a_hardened_cookie_and_is_audited(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.SECURITY)
    response = login(client, "alice")
    assert response.status_code == 303 and response.headers["Location"] == "/audit"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("tollgate_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # public_url is http here
    assert client.get("/api/v1/audit").status_code == 200
    [event] = events(store, action=AuditAction.LOGIN.value)
    assert event.actor == "user:alice" and event.actor_role == "security" and event.target == "user:alice"


def test_the_cookie_is_secure_behind_https(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> None:
    app = build_app(monkeypatch, auth_settings(redis_url, database_url, public_url="https://tollgate.example"))
    user(app_store(app), "alice", Role.VIEWER)
    response = login(app.test_client(), "alice")
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_wrong_password_is_refused_and_audited(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.SECURITY)
    response = login(client, "alice", "not the password")
    assert response.status_code == 401 and b"wrong name or password" in response.data
    error(client.get("/api/v1/audit"), 401)
    response = login(client, "mallory", "whatever it is")
    assert response.status_code == 401 and b"wrong name or password" in response.data
    failed = events(store, action=AuditAction.LOGIN_FAILED.value)
    assert [(e.actor, e.target) for e in failed] == [("system:login", "user:alice"), ("system:login", "user:mallory")]


def test_login_needs_the_csrf_token(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.SECURITY)
    csrf(client)
    response = client.post("/login", data={"name": "alice", "password": PASSWORD})
    assert response.status_code == 403
    response = client.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 403
    assert events(store, action=AuditAction.LOGIN.value) == []


def test_repeated_failures_throttle_the_name(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.SECURITY)
    for _ in range(accounts.LOGIN_MAX_FAILURES):
        assert login(client, "alice", "guess guess guess").status_code == 401
    response = login(client, "alice")  # even the right password waits now
    assert response.status_code == 429
    assert events(store, action=AuditAction.LOGIN_FAILED.value, newest_first=True, limit=1)[0].reason == "throttled"
    assert events(store, action=AuditAction.LOGIN.value) == []


def test_logout_needs_csrf_and_ends_the_session(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.VIEWER)
    login(client, "alice")
    assert client.post("/logout").status_code == 403
    assert client.get("/api/v1/audit").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    error(client.get("/api/v1/audit"), 401)


def test_disabling_or_signing_out_ends_existing_sessions(app: Flask, store: Store) -> None:
    user(store, "alice", Role.VIEWER)
    user(store, "bob", Role.VIEWER)
    alice, bob = app.test_client(), app.test_client()
    login(alice, "alice")
    login(bob, "bob")
    accounts.end_sessions(store, OPERATOR, "alice", reason="lost laptop")
    error(alice.get("/api/v1/audit"), 401)
    assert login(alice, "alice").status_code == 303  # signing out is not disabling
    assert alice.get("/api/v1/audit").status_code == 200
    accounts.disable_user(store, OPERATOR, "bob", reason="left")
    error(bob.get("/api/v1/audit"), 401)
    assert login(bob, "bob").status_code == 401


def test_a_forged_session_cookie_is_not_a_login(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.SECURITY)
    client.set_cookie("tollgate_session", '{"user": "alice", "epoch": 0}')
    error(client.get("/api/v1/audit"), 401)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/images/team/app@sha256:" + "a" * 64, "/images/team/app@sha256:" + "a" * 64),
        ("//evil.example/x", "/"),
        ("https://evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_redirects_after_login_stay_on_the_site(app: Flask, target: str | None, expected: str) -> None:
    with app.test_request_context("/login"):
        assert safe_next(target) == expected


def test_login_redirects_to_a_safe_next(client: FlaskClient, store: Store) -> None:
    user(store, "alice", Role.VIEWER)
    for next_page, location in (("/audit?x=1", "/audit?x=1"), ("//evil.example", "/")):
        response = client.post(
            "/login", data={"name": "alice", "password": PASSWORD, "csrf_token": csrf(client), "next": next_page}
        )
        assert response.status_code == 303 and response.headers["Location"] == location


def test_pages_escape_what_they_show(client: FlaskClient, store: Store) -> None:
    response = client.get("/login?next=/x%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    assert b"<script>alert" not in response.data and b"&lt;script&gt;" in response.data


# -- the trusted proxy -------------------------------------------------------------------------------------------


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> Flask:
    settings = auth_settings(
        redis_url, database_url, auth_proxy_header=HEADER, auth_trusted_proxies=("10.9.8.0/24", "fd00::/8")
    )
    return build_app(monkeypatch, settings)


def test_the_identity_header_is_honoured_from_a_trusted_proxy(proxied: Flask) -> None:
    store = app_store(proxied)
    user(store, "alice@example.org", Role.SECURITY, password=None)
    client = proxied.test_client()
    trusted = {"REMOTE_ADDR": PROXY}
    response = client.get("/api/v1/audit", headers={HEADER: "alice@example.org"}, environ_base=trusted)
    assert response.status_code == 200
    # A name the users table does not know gets the default role (viewer): reads, not writes.
    response = client.get("/api/v1/audit", headers={HEADER: "someone"}, environ_base=trusted)
    assert response.status_code == 200
    token_csrf = csrf(client)
    response = client.post(
        "/api/v1/policy",
        json={"text": "version: 1\n", "reason": "try"},
        headers={HEADER: "someone", "X-CSRF-Token": token_csrf},
        environ_base=trusted,
    )
    assert error(response, 403)["reason"].startswith("this needs the security role")


def test_the_identity_header_is_ignored_from_anywhere_else(proxied: Flask) -> None:
    store = app_store(proxied)
    user(store, "alice", Role.SECURITY, password=None)
    client = proxied.test_client()
    for address in ("127.0.0.1", "10.9.9.1", "192.168.1.1", "::1"):
        response = client.get("/api/v1/audit", headers={HEADER: "alice"}, environ_base={"REMOTE_ADDR": address})
        error(response, 401)
    response = client.get("/api/v1/audit", headers={HEADER: "alice"}, environ_base={"REMOTE_ADDR": "fd00::5"})
    assert response.status_code == 200


def test_proxied_browser_writes_need_csrf(proxied: Flask) -> None:
    store = app_store(proxied)
    user(store, "alice", Role.SECURITY, password=None)
    client = proxied.test_client()
    trusted = {"REMOTE_ADDR": PROXY}
    body = {"text": "version: 1\n", "reason": "tighten"}
    response = client.post("/api/v1/policy", json=body, headers={HEADER: "alice"}, environ_base=trusted)
    assert "CSRF" in error(response, 403)["reason"]
    response = client.post(
        "/api/v1/policy", json=body, headers={HEADER: "alice", "X-CSRF-Token": csrf(client)}, environ_base=trusted
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    [change] = events(store, action=AuditAction.POLICY_CHANGE.value)
    assert change.actor == "user:alice" and change.actor_role == "security"


def test_a_disabled_or_unknown_proxy_identity(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str
) -> None:
    settings = auth_settings(
        redis_url,
        database_url,
        auth_proxy_header=HEADER,
        auth_trusted_proxies=("10.9.8.7",),
        auth_proxy_default_role="",
    )
    app = build_app(monkeypatch, settings)
    store = app_store(app)
    user(store, "bob", Role.VIEWER, password=None)
    accounts.disable_user(store, OPERATOR, "bob", reason="left")
    client = app.test_client()
    trusted = {"REMOTE_ADDR": PROXY}
    assert (
        "disabled" in error(client.get("/api/v1/audit", headers={HEADER: "bob"}, environ_base=trusted), 403)["reason"]
    )
    response = client.get("/api/v1/audit", headers={HEADER: "stranger"}, environ_base=trusted)
    assert "not a Tollgate user" in error(response, 403)["reason"]
    error(client.get("/api/v1/audit", headers={HEADER: "<bad name>"}, environ_base=trusted), 401)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_proxy_header": HEADER}, "TRUSTED_PROXIES is empty"),
        ({"auth_proxy_header": HEADER, "auth_trusted_proxies": ("10.0.0.300/8",)}, "not an address or CIDR"),
        ({"auth_proxy_default_role": "admin"}, "DEFAULT_ROLE"),
        ({"session_lifetime": 0}, "SESSION_LIFETIME"),
    ],
)
def test_auth_settings_are_checked_at_boot(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Any, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_app(monkeypatch, auth_settings(redis_url, f"sqlite:///{tmp_path / 'x.db'}", **overrides))


def test_settings_read_from_the_environment() -> None:
    from workers.settings import Settings

    settings = Settings.from_env(
        {
            "TOLLGATE_ANONYMOUS_READ": "false",
            "TOLLGATE_AUTH_PROXY_HEADER": HEADER,
            "TOLLGATE_AUTH_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.4",
            "TOLLGATE_AUTH_PROXY_DEFAULT_ROLE": "developer",
            "TOLLGATE_SESSION_LIFETIME": "3600",
        }
    )
    assert settings.anonymous_read is False and settings.auth_proxy_header == HEADER
    assert settings.auth_trusted_proxies == ("10.0.0.0/8", "192.168.1.4")
    assert settings.auth_proxy_default_role == "developer" and settings.session_lifetime == 3600
