"""``tollgate policy`` and ``tollgate waiver`` against a real database and Redis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.storage import digest_of, make_finding, make_report
from workers import audit
from workers.cli import main
from workers.queue import RESCAN_QUEUE
from workers.store import Store


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str) -> Store:
    for key in list(os.environ):
        if key.startswith("TOLLGATE_") and not key.startswith("TOLLGATE_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TOLLGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLGATE_REDIS_URL", redis_url)
    store = Store(database_url)
    store.migrate()
    return store


def test_policy_set_show_history(
    env: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_conn: redis.Redis
) -> None:
    env.save_report(make_report("team/app", digest_of("a")))
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ndefault:\n  actions: {suspicious: quarantine}\n")
    assert main(["policy", "set", str(policy), "--reason", "hold suspicious images"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["source"] == "api" and "1 image(s) queued for a new decision" in err
    assert len(Queue(RESCAN_QUEUE, connection=redis_conn, serializer=JSONSerializer).get_job_ids()) == 1
    assert main(["policy", "show"]) == 0
    out, err = capsys.readouterr()
    assert out == policy.read_text() and "hold suspicious images" in err
    assert main(["policy", "history", "--format", "json"]) == 0
    (version,) = json.loads(capsys.readouterr().out)
    assert version["actor"].startswith("system:cli/")
    (event,) = audit.events(env, action="policy.change")
    assert event.actor.startswith("system:cli/") and event.reason == "hold suspicious images"


def test_policy_set_refuses_an_invalid_file(env: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\ndefault:\n  actions: {suspicious: hold}\n")
    assert main(["policy", "set", str(policy), "--reason", "try"]) == 2
    assert "policy file <policy change>:3" in capsys.readouterr().err
    assert main(["policy", "show", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) is None


def test_waiver_create_list_revoke(env: Store, capsys: pytest.CaptureFixture[str], redis_conn: redis.Redis) -> None:
    env.save_report(make_report("team/app", digest_of("a"), findings=[make_finding(0)]))
    args = ["waiver", "create", "miner.xmrig-config-0", "--reason", "benchmark image", "--expires-in", "3"]
    assert main([*args, "--repository", "team/*"]) == 0
    out, err = capsys.readouterr()
    waiver = json.loads(out)
    assert waiver["state"] == "active" and waiver["repository_pattern"] == "team/*"
    assert "1 image(s) queued for a new decision (waiver" in err
    assert main(["waiver", "list"]) == 0
    assert capsys.readouterr().out.startswith(f"{waiver['id']}\tactive\t")
    assert main(["waiver", "revoke", str(waiver["id"]), "--reason", "no longer needed"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "revoked"
    assert main(["waiver", "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["waiver", "revoke", str(waiver["id"]), "--reason", "again"]) == 2
    assert "already revoked" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--expires-in", "9999"], "more than 365 days ahead"),
        (["--expires-at", "yesterday"], "Invalid isoformat"),
        (["--expires-in", "3", "--digest", "sha256:nope"], "not a valid digest"),
    ],
)
def test_waiver_create_refuses_bad_input(
    env: Store, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["waiver", "create", "miner.xmrig-config", "--reason", "because of reasons", *extra]) == 2
    assert message in capsys.readouterr().err
