"""`tollgate scan --policy FILE`: the same image is blocked in one repository and allowed in another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_push_to_verdict import CLEAN_APP
from tests.support.oci import tar_layer, write_image_layout

pytestmark = pytest.mark.functional

# Local layouts are recorded as local/<directory name>, so the directory names pick the policy entry.
POLICY = """\
version: 1
repositories:
  - match: "local/prod-*"
    actions: {suspicious: quarantine}
    block_categories: [pua]
"""


def _scan(ref: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    environ["TOLLGATE_REGISTRY_USE_DOCKER_CONFIG"] = "false"
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "scan", ref, "--format", "json", *extra],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _image(path: Path, config: dict[str, Any]) -> str:
    return write_image_layout(path, [tar_layer({"usr/local/bin/entry.sh": CLEAN_APP})], config={"config": config})


def test_scan_policy_quarantines_suspicious_only_where_policy_says(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    # config.defense-evasion-at-start (high, medium confidence): suspicious, whatever the correlation stage does
    config = {"Cmd": ["sh", "-c", "setenforce 0; exec /usr/local/bin/entry.sh"]}
    for name in ("prod-app", "dev-app"):
        _image(tmp_path / name, config)

    code, record, _ = _scan(f"oci:{tmp_path / 'prod-app'}", "--policy", str(policy))
    assert (code, record["repository"], record["verdict"]) == (1, "local/prod-app", "suspicious")
    assert record["action"] == "quarantine"
    assert "config.defense-evasion-at-start" in record["explanation"]

    code, record, _ = _scan(f"oci:{tmp_path / 'dev-app'}", "--policy", str(policy))
    assert (code, record["verdict"], record["action"]) == (0, "suspicious", "warn")

    code, record, _ = _scan(f"oci:{tmp_path / 'prod-app'}")  # without the policy: the built-in default
    assert (code, record["action"]) == (0, "warn")


def test_scan_policy_blocks_an_open_miner_as_pua(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("    actions: {suspicious: quarantine}\n", ""))
    # config.miner-in-env: a pool URL and nothing hostile, which the correlation stage files as pua
    config = {"Env": ["POOL=stratum+tcp://198.51.100.23:3333"], "Cmd": ["/usr/local/bin/entry.sh"]}
    for name in ("prod-miner", "dev-miner"):
        _image(tmp_path / name, config)

    code, record, _ = _scan(f"oci:{tmp_path / 'dev-miner'}", "--policy", str(policy))
    if not any(f["category"] == "pua" for f in record["findings"]):
        pytest.skip("this pipeline does not file open miners as pua (correlation stage absent)")
    assert (code, record["verdict"], record["action"]) == (0, "suspicious", "warn")

    code, record, _ = _scan(f"oci:{tmp_path / 'prod-miner'}", "--policy", str(policy))
    assert (code, record["verdict"], record["action"]) == (1, "suspicious", "quarantine")
    assert "policy for local/prod-* blocks pua (config.miner-in-env" in record["explanation"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("version: 1\nrepositories:\n  - match: 'prod/**'\n    actions: {suspicious: block}\n", ":4: repositories[0]"),
    ],
)
def test_scan_bad_policy_exits_2_with_the_message(tmp_path: Path, content: str | None, message: str) -> None:
    _image(tmp_path / "img", {"Cmd": ["/usr/local/bin/entry.sh"]})
    policy = tmp_path / "policy.yaml"
    if content is not None:
        policy.write_text(content)
    code, record, stderr = _scan(f"oci:{tmp_path / 'img'}", "--policy", str(policy))
    assert code == 2
    assert record["status"] == "error"
    assert f"policy file {policy}" in record["error"]
    assert message in record["error"]
    assert message in stderr
