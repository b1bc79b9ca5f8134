"""Build (and cache) a real Debian bookworm minbase image as an OCI layout, for benchmarks and the benign corpus."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TOLLGATE_BENCH_CACHE", ROOT / "var" / "bench"))
# A realistic application base: minbase plus what most images add (~60 MB compressed).
BENCH_PACKAGES = ("ca-certificates", "curl", "python3")
MIRROR = os.environ.get("TOLLGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def debootstrap(target: Path, *, suite: str = "bookworm", include: tuple[str, ...] = ()) -> Path:
    """A minbase root filesystem at ``target`` (built once; needs root and the debootstrap package)."""
    stamp = target / ".tollgate-complete"
    if stamp.exists():
        return target
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(include))
    cmd += [suite, str(target), MIRROR]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    stamp.write_text("ok\n")
    return target


def _is_cache(rel: Path) -> bool:
    """Package caches that Debian's official images also leave out."""
    text = rel.as_posix()
    return any(text.startswith(p) and text != p for p in ("var/cache/apt/archives/", "var/lib/apt/lists/"))


def rootfs_layer(rootfs: Path) -> tuple[bytes, str, str]:
    """Tar ``rootfs`` (skipping /proc, /sys, /dev contents) and gzip it; return (blob, digest, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            rel = path.relative_to(rootfs)
            if rel.parts[0] in {"proc", "sys", "dev"} and len(rel.parts) > 1:
                continue
            if rel.name == ".tollgate-complete" or _is_cache(rel):
                continue
            info = tar.gettarinfo(str(path), arcname=str(rel))
            info.mtime = 0
            if info.isreg():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            elif info.isdev():
                continue
            else:
                tar.addfile(info)
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return blob, "sha256:" + hashlib.sha256(blob).hexdigest(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def write_layout(out: Path, blob: bytes, digest: str, diff_id: str, *, tag: str = "bookworm") -> str:
    """Write a one-layer OCI image layout; return the manifest digest."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return "sha256:" + hexd

    put(blob)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["bash"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "# debootstrap --variant=minbase bookworm", "comment": "tollgate bench"}],
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
                        "size": len(blob)}],
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
