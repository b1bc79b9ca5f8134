"""Build (and cache) a real Debian bookworm minbase image as an OCI layout, for benchmarks and the benign corpus."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TOLLGATE_BENCH_CACHE", ROOT / "var" / "bench"))
# A realistic application base: minbase plus what most images add (~60 MB compressed).
BENCH_PACKAGES = ("ca-certificates", "curl", "python3")
MIRROR = os.environ.get("TOLLGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


STAMP = ".tollgate-complete"
# Paths whose contents never go into a layer: the kernel's mounts and the device nodes debootstrap made.
_PSEUDO_DIRS = frozenset({"proc", "sys", "dev"})


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock; parallel test workers and benchmarks build each root only once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unmount_under(target: Path) -> None:
    """Lazily unmount whatever an interrupted debootstrap left mounted in ``target`` (/proc, /sys, bound /dev).

    Deleting a half-built root with /dev bound from the host would otherwise delete the host's device nodes.
    """
    prefix = str(target.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def _ensure_debootstrap(lock_dir: Path) -> None:
    """Install the debootstrap package once; the lock keeps two workers from fighting over dpkg's lock."""
    if shutil.which("debootstrap") is not None:
        return
    with file_lock(lock_dir / ".apt-install.lock"):
        if shutil.which("debootstrap") is None:
            subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True)


def debootstrap(
    target: Path, *, suite: str = "bookworm", include: tuple[str, ...] = (), variant: str = "minbase"
) -> Path:
    """A Debian root filesystem at ``target``, built once and reused (needs root and the debootstrap package).

    The stamp records what was asked for, so a root built with other packages, or one whose build was
    interrupted (no stamp), is rebuilt. Concurrent callers for the same ``target`` wait on a file lock and
    the second one finds the first one's root.
    """
    recipe = json.dumps({"suite": suite, "variant": variant, "include": sorted(include)}, sort_keys=True) + "\n"
    stamp = target / STAMP
    if _stamp_is(stamp, recipe):
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if _stamp_is(stamp, recipe):
            return target
        _ensure_debootstrap(target.parent)
        if target.exists():
            _unmount_under(target)
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["debootstrap", f"--variant={variant}"]
        if include:
            cmd.append("--include=" + ",".join(include))
        cmd += [suite, str(target), MIRROR]
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        finally:
            _unmount_under(target)
        stamp.write_text(recipe)
    return target


def _stamp_is(stamp: Path, recipe: str) -> bool:
    try:
        return stamp.read_text() == recipe
    except FileNotFoundError:
        return False


def _is_cache(rel: Path) -> bool:
    """Package caches that Debian's official images also leave out."""
    text = rel.as_posix()
    return any(text.startswith(p) and text != p for p in ("var/cache/apt/archives/", "var/lib/apt/lists/"))


def rootfs_paths(rootfs: Path) -> list[Path]:
    """Every path of ``rootfs`` that belongs in a layer, relative and sorted (parents before children).

    Leaves out the contents of /proc, /sys and /dev, the apt caches and the build stamp; the directories
    themselves stay, as in Debian's official images. Symlinked directories are not followed.
    """
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        here = Path(dirpath)
        for name in dirnames + filenames:
            rel = (here / name).relative_to(rootfs)
            if rel.parts[0] in _PSEUDO_DIRS and len(rel.parts) > 1:
                continue
            if rel.as_posix() == STAMP or _is_cache(rel):
                continue
            out.append(rel)
    out.sort(key=lambda rel: rel.parts)
    return out


def rootfs_tar(rootfs: Path, paths: Iterable[Path] | None = None, *, whiteouts: Iterable[str] = ()) -> bytes:
    """An uncompressed, reproducible tar of ``paths`` (default: all of :func:`rootfs_paths`) under ``rootfs``.

    Entries keep their real mode, uid and gid, symlink targets and hard links (the first path of an inode is
    the file, the later ones link to it); mtimes are 0 and host user names are left out, so the bytes depend
    on the tree alone. ``whiteouts`` are archive names of empty whiteout files (``etc/.wh.foo``) to add.
    """
    raw = io.BytesIO()
    entries: list[tuple[str, Path | None]] = [
        (rel.as_posix(), rel) for rel in (rootfs_paths(rootfs) if paths is None else paths)
    ]
    entries += [(name, None) for name in whiteouts]
    entries.sort(key=lambda item: item[0].split("/"))
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, rel in entries:
            if rel is None:
                info = tarfile.TarInfo(arcname)
                info.mtime = 0
                tar.addfile(info)
                continue
            path = rootfs / rel
            info = tar.gettarinfo(str(path), arcname=arcname)
            if info is None or info.isdev():
                continue  # sockets and device nodes outside /dev have no place in an image
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return raw.getvalue()


def rootfs_layer(rootfs: Path) -> tuple[bytes, str, str]:
    """Tar ``rootfs`` (skipping /proc, /sys, /dev contents) and gzip it; return (blob, digest, diff_id)."""
    tar_bytes = rootfs_tar(rootfs)
    blob = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return blob, "sha256:" + hashlib.sha256(blob).hexdigest(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def write_layout(
    out: Path,
    blob: bytes | None,
    digest: str,
    diff_id: str,
    *,
    tag: str = "bookworm",
    size: int | None = None,
    created_by: str = "# debootstrap --variant=minbase bookworm",
) -> str:
    """Write a one-layer OCI image layout; return the manifest digest.

    ``blob`` None means the layer blob is already in ``blobs/sha256/`` (streamed there, too big for memory)
    and ``size`` gives its length.
    """
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return "sha256:" + hexd

    if blob is not None:
        put(blob)
        size = len(blob)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["bash"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": created_by, "comment": "tollgate bench"}],
        },
        sort_keys=True,
    ).encode()
    config_digest = put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                        "size": size}],
        }
    ).encode()
    manifest_digest = put(manifest)
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (out / "index.json").write_text(json.dumps(index))
    return manifest_digest


def debian_layout(*, include: tuple[str, ...] = BENCH_PACKAGES, name: str = "bookworm-bench") -> tuple[Path, str, int]:
    """The cached OCI layout of a Debian image; returns (layout dir, manifest digest, compressed layer size)."""
    layout = CACHE / f"{name}.oci"
    meta = layout / "tollgate-meta.json"
    if meta.exists():
        data = json.loads(meta.read_text())
        return layout, data["digest"], data["size"]
    rootfs = debootstrap(CACHE / name, include=include)
    blob, digest, diff_id = rootfs_layer(rootfs)
    if layout.exists():
        shutil.rmtree(layout)
    manifest_digest = write_layout(layout, blob, digest, diff_id)
    meta.write_text(json.dumps({"digest": manifest_digest, "size": len(blob), "layer": digest}))
    return layout, manifest_digest, len(blob)


def main() -> int:
    """Build the layout and print where it is."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--include", default=",".join(BENCH_PACKAGES), help="comma-separated extra packages")
    parser.add_argument("--name", default="bookworm-bench")
    args = parser.parse_args()
    include = tuple(p for p in args.include.split(",") if p)
    layout, digest, size = debian_layout(include=include, name=args.name)
    print(f"{layout} {digest} layer={size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
