"""``tollgate token|user|audit`` as subprocesses against real databases, used against a live app over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.accounts import RULESET, auth_settings
from tests.support.stack import LiveApp, serve_app
from tests.unit.test_audit import _disable_guard

pytestmark = pytest.mark.functional

TOLLGATE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "tollgate")


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOLLGATE, *args], capture_output=True, text=True, env=env, input=stdin, timeout=120, check=False
    )


@pytest.fixture
def env(database_url: str, redis_url: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    environ.update({"TOLLGATE_DATABASE_URL": database_url, "TOLLGATE_REDIS_URL": redis_url})
    return environ


@pytest.fixture
def live(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveApp]:
    import service

    monkeypatch.setattr(service, "current_ruleset", lambda _settings: RULESET)
    app, _thread = serve_app(auth_settings(env["TOLLGATE_REDIS_URL"], env["TOLLGATE_DATABASE_URL"]))
    try:
        yield app
    finally:
        app.server.shutdown()


def get(live: LiveApp, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{live.url}{path}", headers=headers, timeout=10)


def test_token_create_prints_a_working_token_once(env: dict[str, str], live: LiveApp) -> None:
    created = run(env, "token", "create", "--role", "security", "--name", "first-admin", "--expires-in", "30")
    assert created.returncode == 0, created.stderr
    [value] = created.stdout.splitlines()
    assert value.startswith("tg_") and "role security" in created.stderr and "expires" in created.stderr
    assert get(live, "/api/v1/audit", value).status_code == 200
    assert get(live, "/api/v1/audit").status_code == 401

    listed = run(env, "token", "list", "--format", "json")
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "first-admin" and entry["role"] == "security" and entry["last_used_at"]
    assert value.split("_", 2)[2] not in listed.stdout
    text = run(env, "token", "list").stdout
    assert "first-admin" in text and "active" in text

    revoked = run(env, "token", "revoke", entry["id"], "--reason", "rotated")
    assert revoked.returncode == 0, revoked.stderr
    assert get(live, "/api/v1/audit", value).status_code == 401
    again = run(env, "token", "revoke", entry["id"], "--reason", "rotated")
    assert again.returncode == 2 and "revoked already" in again.stderr
    assert run(env, "token", "revoke", "0" * 16, "--reason", "x").returncode == 2
    assert "revoked" in run(env, "token", "list").stdout


def test_a_scoped_developer_token(env: dict[str, str], live: LiveApp) -> None:
    created = run(env, "token", "create", "--role", "developer", "--repository", "team/*", "--repository", "org/app")
    assert created.returncode == 0, created.stderr
    [entry] = json.loads(run(env, "token", "list", "--format", "json").stdout)
    assert entry["repositories"] == ["team/*", "org/app"] and entry["name"] == f"token-{entry['id']}"
    response = httpx.post(
        f"{live.url}/api/v1/images/other/app@sha256:{'a' * 64}/rescan",
        json={"reason": "try"},
        headers={"Authorization": f"Bearer {created.stdout.strip()}"},
        timeout=10,
    )
    assert response.status_code == 403 and "limited to team/*, org/app" in response.json()["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "admin"], "invalid choice"),
        (["--role", "viewer", "--expires-in", "0"], "number of days"),
        (["--role", "viewer", "--repository", "Team/App"], "not a repository pattern"),
        (["--role", "viewer", "--name", "has space"], "not a token name"),
    ],
)
def test_token_create_refuses_bad_input(env: dict[str, str], args: list[str], message: str) -> None:
    result = run(env, "token", "create", *args)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""


def test_users_log_in_and_are_disabled(env: dict[str, str], live: LiveApp) -> None:
    created = run(env, "user", "create", "alice", "--role", "security", "--password-stdin", stdin="a long passphrase\n")
    assert created.returncode == 0, created.stderr
    assert run(env, "user", "create", "carol", "--role", "viewer", "--no-password").returncode == 0
    short = run(env, "user", "create", "bob", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least" in short.stderr
    no_tty = run(env, "user", "create", "dave", "--role", "viewer", stdin="")
    assert no_tty.returncode == 2 and "--password-stdin or --no-password" in no_tty.stderr
    assert run(env, "user", "create", "alice", "--role", "viewer", "--no-password").returncode == 2

    users = {u["name"]: u for u in json.loads(run(env, "user", "list", "--format", "json").stdout)}
    assert set(users) == {"alice", "carol"} and users["alice"]["password"] and not users["carol"]["password"]

    with httpx.Client(base_url=live.url, timeout=10) as browser:
        page = browser.get("/login")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = browser.post("/login", data={"name": "alice", "password": "a long passphrase", "csrf_token": csrf})
        assert response.status_code == 303
        assert browser.get("/api/v1/audit").status_code == 200
        assert run(env, "user", "disable", "alice", "--reason", "left").returncode == 0
        assert browser.get("/api/v1/audit").status_code == 401
    assert run(env, "user", "disable", "nobody").returncode == 2
    assert "disabled" in run(env, "user", "list").stdout


def test_audit_export_and_verify(env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    assert (
        run(env, "token", "create", "--role", "viewer", "--name", "a", "--reason", "for the dashboard").returncode == 0
    )
    [entry] = json.loads(run(env, "token", "list", "--format", "json").stdout)
    assert run(env, "token", "revoke", entry["id"], "--reason", "dashboard retired").returncode == 0

    out = tmp_path / "audit.jsonl"
    exported = run(env, "audit", "export", "--output", str(out))
    assert exported.returncode == 0 and "2 audit records" in exported.stderr
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["action"], r["reason"]) for r in lines] == [
        ("token.create", "for the dashboard"),
        ("token.revoke", "dashboard retired"),
    ]
    assert lines[0]["actor"].startswith("system:cli/") and lines[1]["prev_hash"] == lines[0]["hash"]
    only = run(env, "audit", "export", "--action", "token.revoke")
    assert [json.loads(line)["action"] for line in only.stdout.splitlines()] == ["token.revoke"]
    assert run(env, "audit", "export", "--since", "2999-01-01T00:00:00Z").stdout == ""
    bad = run(env, "audit", "export", "--since", "2026-01-01")
    assert bad.returncode == 2 and "time zone" in bad.stderr

    verified = run(env, "audit", "verify")
    assert verified.returncode == 0 and "intact (2 records)" in verified.stdout
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        _disable_guard(conn)
        conn.execute(
            sa.text("UPDATE audit_events SET reason = 'nothing happened' WHERE id = :id"), {"id": lines[0]["id"]}
        )
    engine.dispose()
    broken = run(env, "audit", "verify")
    assert broken.returncode == 1 and f"BROKEN at record {lines[0]['id']}" in broken.stdout
