"""Real Debian bookworm root filesystems for tests, built once per machine, and their layers."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from bench.debian_image import STAMP, debootstrap, file_lock, rootfs_paths, rootfs_tar
from tests.support.oci import LAYER_MEDIA_TYPES, LayerBlob, raw_layer, whiteout

# What each named root holds on top of `debootstrap --variant=minbase bookworm` (dependencies come along).
ROOT_PACKAGES: dict[str, tuple[str, ...]] = {
    "minbase": (),
    "services": ("cron", "openssh-server", "openssh-client", "chrony"),
    "tools": ("nmap", "masscan", "netcat-openbsd", "busybox", "selinux-utils"),
    "docker": ("docker.io",),
}
CACHE_ENV = "TOLLGATE_TEST_CACHE"  # TOLLGATE_TEST_* names are ignored by the service settings
# Bump when the layer format changes (what is left out, how entries are written), to drop cached layers.
LAYER_FORMAT = 1


def cache_dir() -> Path:
    """Where built roots live: outside the checkout, so a fresh CI clone on the same machine reuses them."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "tollgate-test") / "debian"


def debian_root(name: str) -> Path:
    """The cached root named ``name`` ("minbase", "services", "tools", "docker"), built on first use.

    Safe to call from several pytest-xdist workers at once: the build holds a file lock per root and
    finishes with a stamp; a root without its stamp (an interrupted build) is built again.
    """
    if name not in ROOT_PACKAGES:
        raise KeyError(f"unknown Debian root {name!r}; known: {', '.join(ROOT_PACKAGES)}")
    return debootstrap(cache_dir() / name, include=ROOT_PACKAGES[name])


def _cache_name(kind: str, roots: tuple[Path, ...]) -> tuple[str, str] | None:
    """(stem, key) naming a layer made from built roots of :func:`cache_dir`, or None when a root is not one.

    Built roots never change once stamped (a rebuild writes a new stamp), so the stamp's content and time
    identify the tree; anything else (a copy, a tree a test modifies) is tarred afresh every time.
    """
    parts: list[str] = [str(LAYER_FORMAT)]
    names: list[str] = []
    for root in roots:
        resolved = root.resolve()
        stamp = resolved / STAMP
        if resolved.parent != cache_dir().resolve() or not stamp.is_file():
            return None
        names.append(resolved.name)
        parts += [resolved.name, stamp.read_text(), str(stamp.stat().st_mtime_ns)]
    return "-".join([kind, *names]), hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    partial.replace(path)


def _cached_layer(kind: str, roots: tuple[Path, ...], build: Callable[[], bytes]) -> LayerBlob:
    """Gzip the tar ``build`` makes, keeping the blob on disk for built roots (gzip is most of the cost)."""
    named = _cache_name(kind, roots)
    if named is None:
        return raw_layer(build(), compression="gzip")
    stem, key = named
    directory = cache_dir() / "layers"
    blob_path, meta_path = directory / f"{stem}.{key}.tar.gz", directory / f"{stem}.{key}.json"
    with file_lock(directory / f"{stem}.lock"):
        if meta_path.is_file() and blob_path.is_file():
            data = blob_path.read_bytes()
            meta = json.loads(meta_path.read_text())
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if digest == meta["digest"]:
                return LayerBlob(data, LAYER_MEDIA_TYPES["gzip"], diff_id=meta["diff_id"], digest=digest)
        layer = raw_layer(build(), compression="gzip")
        for old in directory.glob(f"{stem}.*"):
            if old.suffix != ".lock":
                old.unlink()  # layers of an earlier build of the same roots
        _write_atomically(blob_path, layer.data)
        # The metadata lands last: a reader that finds it also finds the whole blob.
        _write_atomically(meta_path, json.dumps({"digest": layer.digest, "diff_id": layer.diff_id}).encode())
    return layer


def root_layer(root: Path) -> LayerBlob:
    """The whole of ``root`` as one reproducible gzip layer (no /proc, /sys, /dev contents, no apt caches)."""
    return _cached_layer("root", (root,), lambda: rootfs_tar(root))


def _same(a: Path, b: Path) -> bool:
    """Whether two paths would produce the same tar entry (type, mode, owner, link target, content)."""
    sa, sb = a.lstat(), b.lstat()
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and filecmp.cmp(a, b, shallow=False)
    return True  # directories (and anything else) are the same entry when their metadata is


def _is_dir(path: Path) -> bool:
    return stat.S_ISDIR(path.lstat().st_mode)


def package_delta_layer(base: Path, root: Path) -> LayerBlob:
    """What ``root`` adds to or changes in ``base``, as the layer an ``apt-get install`` step would make.

    New and changed entries come with their parent directories (as Docker's layer diffs do); entries of
    ``base`` that ``root`` no longer has become whiteouts (only the topmost removed path of a subtree).
    """

    def build() -> bytes:
        base_paths = set(rootfs_paths(base))
        root_paths = rootfs_paths(root)
        changed: set[Path] = set()
        for rel in root_paths:
            if rel not in base_paths or not _same(base / rel, root / rel):
                changed.add(rel)
                changed.update(p for p in rel.parents if p != Path("."))
        present = set(root_paths)
        # Only the topmost removed path of a subtree needs a whiteout; it hides everything below it.
        removed = sorted(
            rel
            for rel in base_paths - present
            if rel.parent == Path(".") or (rel.parent in present and _is_dir(root / rel.parent))
        )
        names = [whiteout(PurePosixPath(rel).as_posix()) for rel in removed]
        return rootfs_tar(root, sorted(changed, key=lambda p: p.parts), whiteouts=names)

    return _cached_layer("delta", (base, root), build)
