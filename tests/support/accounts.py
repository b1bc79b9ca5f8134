"""Helpers for tests of who may do what: an app on a real store and Redis, tokens, users and browser logins."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import service
from service import create_app
from service.api import STORE_EXTENSION
from workers import accounts
from workers.domain import Actor, ActorKind, Role
from workers.settings import Settings
from workers.store import Store

RULESET = "rules-test-1"
OPERATOR = Actor(ActorKind.SYSTEM, "cli/test")
PASSWORD = "correct horse battery staple"
WEBHOOK_TOKEN = "s3cr3t-webhook-token"


def auth_settings(redis_url: str, database_url: str, **overrides: Any) -> Settings:
    """Settings for an app on the test's database and Redis."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "webhook_token": WEBHOOK_TOKEN,
        "secret_key": "test-secret",
        "reconcile_interval": 0,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


def build_app(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Flask:
    """``create_app`` with the ruleset version pinned (the rules loader has its own tests)."""
    monkeypatch.setattr(service, "current_ruleset", lambda _settings: RULESET)
    app = create_app(settings)
    app.testing = True
    return app


def app_store(app: Flask) -> Store:
    """The app's store."""
    store: Store = app.extensions[STORE_EXTENSION]
    return store


def token(store: Store, role: Role, name: str | None = None, **options: Any) -> str:
    """A new token's full value."""
    return accounts.create_token(store, OPERATOR, role=role, name=name, **options).token


def bearer(value: str) -> dict[str, str]:
    """The Authorization header for ``value``."""
    return {"Authorization": f"Bearer {value}"}


def user(store: Store, name: str, role: Role, *, password: str | None = PASSWORD, **options: Any) -> None:
    """Create a user."""
    accounts.create_user(store, OPERATOR, name, role=role, password=password, **options)


def csrf(client: FlaskClient) -> str:
    """The CSRF token of the client's session (created by loading the login page when there is none)."""
    with client.session_transaction() as session:
        value = session.get("csrf")
    if isinstance(value, str):
        return value
    client.get("/login")
    with client.session_transaction() as session:
        created = session["csrf"]
    assert isinstance(created, str)
    return created


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    """Log in through the form, as a browser does; the response (303 on success)."""
    return client.post("/login", data={"name": name, "password": password, "csrf_token": csrf(client)})
