"""The Debian root helpers on small trees: layer contents, package deltas, the layer cache and build locking."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.debian_image import STAMP, debootstrap
from tests.support import debian_roots
from tests.support.debian_roots import debian_root, package_delta_layer, root_layer
from tests.support.oci import LayerBlob


def _members(layer: LayerBlob) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        return {m.name: m for m in tar.getmembers()}


def _content(layer: LayerBlob, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def _tree(root: Path) -> Path:
    """A tiny root with the kinds of entries a Debian root has."""
    for d in ("usr/bin", "etc/cron.d", "proc/1", "dev", "var/lib/apt/lists", "var/cache/apt/archives", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/su").write_bytes(b"\x7fELF su")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "usr/bin/crontab").write_bytes(b"\x7fELF crontab")
    os.chown(root / "usr/bin/crontab", 0, 102)
    os.link(root / "usr/bin/su", root / "usr/bin/su-link")
    (root / "etc/cron.d/e2scrub_all").write_text("30 3 * * 0 root test -e /run/systemd/system || e2scrub_all\n")
    (root / "proc/1/status").write_text("not in a layer")
    (root / "var/lib/apt/lists/deb.debian.org_dists").write_text("cache")
    (root / "var/cache/apt/archives/x.deb").write_text("cache")
    (root / "tmp").chmod(0o1777)
    return root


def test_root_layer_keeps_modes_owners_and_links(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / STAMP).write_text("stamp")
    layer = root_layer(root)
    members = _members(layer)
    assert members["usr/bin/su"].mode == 0o4755
    assert members["usr/bin/crontab"].gid == 102
    assert members["tmp"].mode == 0o1777
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/su-link"].islnk() and members["usr/bin/su-link"].linkname == "usr/bin/su"
    # The directories stay, their contents (kernel files, apt caches, the build stamp) do not.
    assert {"proc", "dev", "var/lib/apt/lists", "var/cache/apt/archives"} <= set(members)
    assert not {n for n in members if n.startswith(("proc/", "var/lib/apt/lists/", "var/cache/apt/archives/"))}
    assert STAMP not in members
    assert all(m.mtime == 0 and m.uname == "" for m in members.values())
    names = list(members)
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/su")
    assert root_layer(root).digest == layer.digest  # reproducible


def test_package_delta_layer(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base")
    root = _tree(tmp_path / "root")
    (base / "etc/motd").write_text("old")
    (base / "usr/share/old/doc").mkdir(parents=True)
    (base / "usr/share/old/doc/README").write_text("gone")
    (root / "usr/bin/nmap").write_bytes(b"\x7fELF nmap")
    (root / "usr/share/nmap").mkdir(parents=True)
    (root / "usr/share/nmap/nmap-services").write_text("ssh 22/tcp\n")
    (root / "etc/cron.d/e2scrub_all").write_text("changed\n")
    (root / "usr/bin/crontab").chmod(0o2755)  # same bytes, other mode
    delta = package_delta_layer(base, root)
    members = _members(delta)
    assert set(members) == {
        "usr",
        "usr/bin",
        "usr/bin/nmap",
        "usr/bin/crontab",
        "usr/share",
        "usr/share/nmap",
        "usr/share/nmap/nmap-services",
        "usr/share/.wh.old",  # a removed subtree needs one whiteout
        "etc",
        "etc/.wh.motd",
        "etc/cron.d",
        "etc/cron.d/e2scrub_all",
    }
    assert members["usr/bin/crontab"].mode == 0o2755
    assert _content(delta, "etc/cron.d/e2scrub_all") == b"changed\n"
    assert members["usr/share/.wh.old"].size == 0
    assert package_delta_layer(base, root).digest == delta.digest


def test_delta_keeps_a_new_hardlink_to_an_unchanged_file(tmp_path: Path) -> None:
    base = _tree(tmp_path / "base")
    root = _tree(tmp_path / "root")
    os.link(root / "usr/bin/crontab", root / "usr/bin/crontab2")
    members = _members(package_delta_layer(base, root))
    # The link's target is not in the delta, so the new name carries the content itself.
    assert members["usr/bin/crontab2"].isreg()
    assert "usr/bin/crontab" not in members


def test_built_roots_have_their_layers_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(debian_roots.CACHE_ENV, str(tmp_path / "cache"))
    root = _tree(debian_roots.cache_dir() / "minbase")
    (root / STAMP).write_text("recipe\n")
    first = root_layer(root)
    cached = sorted(p.name for p in (debian_roots.cache_dir() / "layers").glob("root-minbase.*"))
    assert len(cached) == 3  # blob, metadata and lock
    (root / "usr/bin/new").write_text("a rebuilt root gets a new stamp")
    assert root_layer(root) == first  # same stamp: served from the cache
    (root / STAMP).write_text("recipe\n")  # what a rebuild does
    os.utime(root / STAMP, ns=(1, 1))
    second = root_layer(root)
    assert second.digest != first.digest and "usr/bin/new" in _members(second)
    assert len(list((debian_roots.cache_dir() / "layers").glob("root-minbase.*.tar.gz"))) == 1


def test_a_tree_outside_the_cache_is_never_served_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(debian_roots.CACHE_ENV, str(tmp_path / "cache"))
    root = _tree(tmp_path / "copy")
    (root / STAMP).write_text("copied from a built root\n")
    root_layer(root)
    assert not (debian_roots.cache_dir() / "layers").exists()


def test_cache_dir_default_is_outside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(debian_roots.CACHE_ENV, raising=False)
    assert debian_roots.cache_dir() == Path.home() / ".cache" / "tollgate-test" / "debian"
    with pytest.raises(KeyError):
        debian_root("alpine")


def test_debootstrap_builds_once_under_a_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(cmd: list[str], **kwargs: Any) -> Any:
        if cmd[0] != "debootstrap":
            return real_run(cmd, **kwargs)  # the unmount guard's umount calls
        calls.append(cmd)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        target = Path(cmd[-2])
        (target / "etc").mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(shutil, "which", lambda _name: "/usr/sbin/debootstrap")
    target = tmp_path / "services"
    threads = [threading.Thread(target=debootstrap, args=(target,), kwargs={"include": ("cron",)}) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and "--include=cron" in calls[0] and "--variant=minbase" in calls[0]
    debootstrap(target, include=("cron",))
    assert len(calls) == 1

    (target / STAMP).unlink()  # an interrupted build: no stamp, so it is built again from scratch
    (target / "half-written").write_text("x")
    debootstrap(target, include=("cron",))
    assert len(calls) == 2 and not (target / "half-written").exists()

    debootstrap(target, include=("cron", "chrony"))  # other packages asked for: rebuilt
    assert len(calls) == 3
