"""Quarantine and release over HTTP, end to end: real registry → webhook → worker → quarantine → token → release.

A malicious image pushed under two tags is quarantined by policy; then ``POST …/release`` is refused
without a token (401) and with a developer token (403), and accepted with a security token made by
``tollgate token create``, after which both tags resolve to the original digest again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.functional.test_cli_tokens import TOLLGATE
from tests.functional.test_push_to_verdict import _malicious_layout
from tests.support.accounts import OPERATOR
from tests.support.stack import Stack
from workers import accounts, audit
from workers.audit import AuditAction
from workers.domain import Role
from workers.registry import RegistryClient
from workers.store import Store

pytestmark = pytest.mark.functional

REPO = "team/app"


def tags_point_to(stack: Stack, digest: str) -> dict[str, bool]:
    with RegistryClient(stack.registry.url, retries=1, backoff=0.01) as client:
        result = {}
        for tag in ("v1", "v2"):
            head = client.head_manifest(REPO, tag)
            result[tag] = head is not None and head.digest == digest
        return result


def test_a_security_token_releases_what_policy_quarantined(stack: Stack, tmp_path: Path) -> None:
    digest = _malicious_layout(tmp_path / "bad")
    stack.push(tmp_path / "bad", REPO, "v1")
    stack.push(tmp_path / "bad", REPO, "v2")
    stack.wait_queued(REPO, "v1")
    stack.wait_queued(REPO, "v2")
    stack.run_worker()  # scans, decides quarantine, and runs the move the decision queued
    record = stack.record(REPO, f"@{digest}").json()
    assert record["action"] == "quarantine" and record["quarantined"] is True, record
    assert tags_point_to(stack, digest) == {"v1": False, "v2": False}

    release = f"{stack.app.url}/api/v1/images/{REPO}@{digest}/release"
    body = {"reason": "reviewed: a test reproduction, not a miner"}
    anonymous = httpx.post(release, json=body, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    store = Store(stack.settings.database_url)
    try:
        developer = accounts.create_token(store, OPERATOR, role=Role.DEVELOPER, name="dev-bot").token
    finally:
        store.close()
    refused = httpx.post(release, json=body, headers={"Authorization": f"Bearer {developer}"}, timeout=10)
    assert refused.status_code == 403 and "security role" in refused.json()["reason"]
    assert tags_point_to(stack, digest) == {"v1": False, "v2": False}

    created = subprocess.run(
        [TOLLGATE, "token", "create", "--role", "security", "--name", "sec-bot"],
        capture_output=True,
        text=True,
        env=stack.env,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    security = created.stdout.strip()
    accepted = httpx.post(release, json=body, headers={"Authorization": f"Bearer {security}"}, timeout=10)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["kind"] == "release"
    stack.run_worker()
    assert tags_point_to(stack, digest) == {"v1": True, "v2": True}
    assert stack.record(REPO, ":v1").json()["quarantined"] is False

    store = Store(stack.settings.database_url)
    try:
        trail = audit.events(store, target=f"{REPO}@{digest}", action=AuditAction.RELEASE.value)
    finally:
        store.close()
    assert [(e.actor, e.details.get("phase")) for e in trail] == [
        ("token:sec-bot", "requested"),
        ("system:tollgate", "done"),
    ]
    assert trail[0].reason == body["reason"] and trail[0].actor_role == "security"
