"""Operator rule packs (TOLLGATE_RULES_EXTRA): a broken pack stops the processes at start, a good one adds findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.oci import tar_layer, write_image_layout

pytestmark = pytest.mark.functional

BROKEN = """rule operator_rule
{
    strings: $a = "x
    condition: $a
}
"""
GOOD = """rule operator_marker
{
    meta:
        description = "the operator's own marker"
    strings:
        $a = "OPERATOR-PACK-MARKER"
    condition:
        $a
}
"""


def _run(args: list[str], extra: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(
        TOLLGATE_RULES_EXTRA=str(extra),
        TOLLGATE_REGISTRY_USE_DOCKER_CONFIG="false",
        TOLLGATE_REDIS_URL="redis://127.0.0.1:1/0",  # never reached: the pack is refused first
    )
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", [["worker", "--burst"], ["serve", "--addr", "127.0.0.1:1"]])
def test_a_pack_that_does_not_compile_is_refused_at_start(tmp_path: Path, command: list[str]) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "broken.yar").write_text(BROKEN)
    proc = _run(command, pack)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{pack / 'broken.yar'}:3" in proc.stderr


def test_a_good_pack_adds_findings_that_inform_without_convicting(tmp_path: Path) -> None:
    pack = tmp_path / "good.yar"
    pack.write_text(GOOD)
    write_image_layout(tmp_path / "img", [tar_layer({"opt/data.bin": b"..OPERATOR-PACK-MARKER.."})])
    proc = _run(["scan", f"oci:{tmp_path / 'img'}", "--format", "json"], pack)
    record = json.loads(proc.stdout)
    (finding,) = [f for f in record["findings"] if f["rule"] == "extra.operator-marker"]
    assert finding["path"] == "/opt/data.bin"
    assert finding["confidence"] == "low"
    assert proc.returncode == 0 and record["verdict"] == "clean"
