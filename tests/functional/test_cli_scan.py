"""`tollgate scan` on OCI layouts, docker archives and the real registry: record output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_push_to_verdict import CLEAN_APP, MINER_CONFIG, REVERSE_SHELL
from tests.support.oci import layout_to_docker_archive, tar_layer, write_image_layout

pytestmark = pytest.mark.functional


def _scan(ref: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    environ.update(env or {})
    environ["TOLLGATE_REGISTRY_USE_DOCKER_CONFIG"] = "false"
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "scan", ref, "--format", "json"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def _bad(path: Path) -> str:
    layer = tar_layer({"opt/x/config.json": MINER_CONFIG, "usr/local/bin/run.sh": REVERSE_SHELL})
    return write_image_layout(path, [layer], config={"config": {"Entrypoint": ["/usr/local/bin/run.sh"]}})


def _good(path: Path) -> str:
    return write_image_layout(path, [tar_layer({"usr/local/bin/entry.sh": CLEAN_APP})])


def test_scan_oci_layout_exit_codes(tmp_path: Path) -> None:
    digest = _bad(tmp_path / "bad")
    code, record = _scan(f"oci:{tmp_path / 'bad'}")
    assert code == 1
    assert record["digest"] == digest
    assert record["verdict"] == "malicious"
    assert record["action"] == "quarantine"
    assert {f["path"] for f in record["findings"]} >= {"/opt/x/config.json", "/usr/local/bin/run.sh"}

    _good(tmp_path / "good")
    code, record = _scan(f"oci:{tmp_path / 'good'}:latest")
    assert code == 0
    assert record["verdict"] == "clean"


def test_scan_docker_archive(tmp_path: Path) -> None:
    _bad(tmp_path / "bad")
    archive = tmp_path / "bad.tar"
    layout_to_docker_archive(tmp_path / "bad", archive)
    code, record = _scan(f"docker-archive:{archive}")
    assert code == 1
    assert record["verdict"] == "malicious"


def test_scan_registry_reference(tmp_path: Path, registry: Any) -> None:
    _bad(tmp_path / "bad")
    registry.push_layout(tmp_path / "bad", "team/cli", "1")
    code, record = _scan(f"{registry.host}/team/cli:1", {"TOLLGATE_REGISTRY_URL": registry.url})
    assert code == 1
    assert record["repository"] == "team/cli"


@pytest.mark.parametrize("ref", ["oci:/nonexistent/layout", "docker-archive:/nonexistent.tar", "Bad Ref!"])
def test_scan_errors_exit_2(ref: str) -> None:
    code, record = _scan(ref)
    assert code == 2
    assert record["status"] == "error"
    assert record["error"]


def test_scan_corrupt_layer_is_never_clean(tmp_path: Path) -> None:
    """A layer whose bytes differ from its digest is an error (exit 2), never a pass."""
    _good(tmp_path / "img")
    blobs = sorted((tmp_path / "img" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    biggest = blobs[-1]  # the layer
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    code, record = _scan(f"oci:{tmp_path / 'img'}")
    assert code == 2
    assert record["status"] == "error"
