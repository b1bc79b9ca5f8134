"""Build OCI image layouts (and docker-save archives) from Python, byte-for-byte reproducibly, for tests."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zstandard

FIXED_MTIME = 1_700_000_000  # every tar entry gets this, so layer digests never depend on the clock
CREATED = "2024-01-01T00:00:00Z"

OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
Compression = Literal["gzip", "zstd", "none"]
PlatformSpec = tuple[str, str] | tuple[str, str, str]  # (os, arch[, variant])
EntryKind = Literal["file", "dir", "symlink", "hardlink", "char", "block", "fifo"]

_TAR_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass(frozen=True)
class FileSpec:
    """One tar entry beyond a plain file: a directory, link, device, or a file with a particular mode/owner."""

    kind: EntryKind = "file"
    data: bytes = b""
    mode: int | None = None  # default 0o644 for files, 0o755 for directories
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0
    size: int | None = None  # lie about the size in the header (hostile tests); None = len(data)

    @classmethod
    def file(cls, data: bytes, mode: int = 0o644, *, uid: int = 0, gid: int = 0) -> FileSpec:
        """A regular file with an explicit mode (e.g. 0o4755 for setuid)."""
        return cls("file", data, mode, uid=uid, gid=gid)

    @classmethod
    def dir(cls, mode: int = 0o755) -> FileSpec:
        """A directory entry."""
        return cls("dir", mode=mode)

    @classmethod
    def symlink(cls, target: str) -> FileSpec:
        """A symbolic link to ``target`` (taken verbatim, so escaping targets can be built)."""
        return cls("symlink", mode=0o777, linkname=target)

    @classmethod
    def hardlink(cls, target: str) -> FileSpec:
        """A hard link to another entry of the layer (``target`` is an archive path)."""
        return cls("hardlink", linkname=target)

    @classmethod
    def device(cls, kind: Literal["char", "block"] = "char", major: int = 1, minor: int = 3) -> FileSpec:
        """A device node (``/dev/null`` by default)."""
        return cls(kind, mode=0o666, devmajor=major, devminor=minor)

    @classmethod
    def fifo(cls) -> FileSpec:
        """A named pipe."""
        return cls("fifo", mode=0o644)


def whiteout(path: str) -> str:
    """The archive name that deletes ``path`` from lower layers (``a/b`` → ``a/.wh.b``)."""
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.wh.{name}" if head else f".wh.{name}"


def opaque(directory: str) -> str:
    """The archive name of the opaque marker that hides every lower-layer child of ``directory``."""
    return f"{directory.rstrip('/')}/.wh..wh..opq"


@dataclass(frozen=True)
class LayerBlob:
    """A layer as stored in a registry: the (compressed) bytes, their media type and both digests."""

    data: bytes
    media_type: str
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of ``data``

    @property
    def size(self) -> int:
        """Stored size in bytes."""
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        """The OCI descriptor of this layer."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files: Mapping[str, bytes | FileSpec]) -> bytes:
    """An uncompressed tar of ``files`` in the given order; names are used verbatim (``../x`` included)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, value in files.items():
            spec = value if isinstance(value, FileSpec) else FileSpec("file", value)
            info = tarfile.TarInfo(name)
            info.type = _TAR_TYPES[spec.kind]
            info.mtime = FIXED_MTIME
            info.uid, info.gid = spec.uid, spec.gid
            info.uname = info.gname = ""
            info.linkname = spec.linkname
            info.devmajor, info.devminor = spec.devmajor, spec.devminor
            info.mode = spec.mode if spec.mode is not None else (0o755 if spec.kind == "dir" else 0o644)
            if spec.kind == "file":
                info.size = len(spec.data) if spec.size is None else spec.size
                # tarfile refuses a header that lies about the size, so a lying header is written by hand.
                if spec.size is not None and spec.size != len(spec.data):
                    out.write(info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
                    out.write(spec.data)
                    out.write(b"\0" * (-len(spec.data) % tarfile.BLOCKSIZE))
                    tar.offset = out.tell()
                    continue
                tar.addfile(info, io.BytesIO(spec.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def compress(raw: bytes, compression: Compression) -> bytes:
    """Compress deterministically (gzip without a timestamp or file name)."""
    if compression == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(raw)
    if compression == "none":
        return raw
    raise ValueError(f"unknown compression {compression!r}")


def tar_layer(
    files: Mapping[str, bytes | FileSpec],
    *,
    compression: Compression = "gzip",
    media_type: str | None = None,
) -> LayerBlob:
    """A layer holding ``files``: ``{"etc/passwd": b"...", "bin": FileSpec.dir(), "a/.wh.b": b""}``."""
    raw = tar_bytes(files)
    return raw_layer(raw, compression=compression, media_type=media_type)


def raw_layer(raw_tar: bytes, *, compression: Compression = "gzip", media_type: str | None = None) -> LayerBlob:
    """A layer from bytes you made yourself (a truncated tar, a bomb, garbage …)."""
    data = compress(raw_tar, compression)
    return LayerBlob(
        data=data,
        media_type=media_type or LAYER_MEDIA_TYPES[compression],
        diff_id=_sha256(raw_tar),
        digest=_sha256(data),
    )


def _merge_config(layers: Sequence[LayerBlob], platform: PlatformSpec, config: Mapping[str, Any] | None) -> bytes:
    """A realistic image config; top-level keys of ``config`` replace the default, ``config.config`` merges."""
    merged: dict[str, Any] = {
        "created": CREATED,
        "architecture": platform[1],
        "os": platform[0],
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {
                "created": CREATED,
                "created_by": f"COPY layer-{i} / # buildkit",
                "comment": "buildkit.dockerfile.v0",
            }
            for i in range(len(layers))
        ],
    }
    if len(platform) == 3:
        merged["variant"] = platform[2]
    for key, value in (config or {}).items():
        if key == "config" and isinstance(value, Mapping):
            merged["config"] = {**merged["config"], **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class _Layout:
    """Writes blobs into ``<path>/blobs/sha256`` and the final ``index.json``/``oci-layout``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blobs = path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(OCI_LAYOUT)

    def put(self, data: bytes) -> str:
        digest = _sha256(data)
        (self.blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    def image(
        self,
        layers: Sequence[LayerBlob],
        config: Mapping[str, Any] | None,
        platform: PlatformSpec,
        annotations: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        """Write config, layers and manifest; return the manifest descriptor."""
        config_raw = _merge_config(layers, platform, config)
        config_digest = self.put(config_raw)
        for layer in layers:
            self.put(layer.data)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_raw)},
            "layers": [layer.descriptor() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        raw = _canonical(manifest)
        return {"mediaType": OCI_MANIFEST, "digest": self.put(raw), "size": len(raw)}

    def finish(self, top: Mapping[str, Any], ref_name: str | None) -> None:
        entry = dict(top)
        if ref_name:
            entry["annotations"] = {**entry.get("annotations", {}), REF_NAME: ref_name}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        (self.path / "index.json").write_bytes(_canonical(index))


def write_image_layout(
    path: Path,
    layers: Sequence[LayerBlob],
    *,
    config: Mapping[str, Any] | None = None,
    platform: PlatformSpec = ("linux", "amd64"),
    ref_name: str | None = "latest",
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Write a single-platform OCI layout at ``path``; return the manifest digest."""
    layout = _Layout(path)
    descriptor = layout.image(layers, config, platform, annotations)
    layout.finish(descriptor, ref_name)
    return str(descriptor["digest"])


def _attestation(layout: _Layout, subject: Mapping[str, Any]) -> dict[str, Any]:
    """A BuildKit-style attestation manifest (in-toto SBOM stub) for ``subject``, as an index entry."""
    statement = _canonical(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{"name": "pkg:docker/test", "digest": {"sha256": subject["digest"].split(":", 1)[1]}}],
            "predicate": {"spdxVersion": "SPDX-2.3", "packages": []},
        }
    )
    statement_digest = layout.put(statement)
    config_raw = _canonical(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": layout.put(config_raw), "size": len(config_raw)},
        "layers": [
            {
                "mediaType": "application/vnd.in-toto+json",
                "digest": statement_digest,
                "size": len(statement),
                "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
            }
        ],
    }
    raw = _canonical(manifest)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": layout.put(raw),
        "size": len(raw),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": subject["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
    }


def write_index_layout(
    path: Path,
    images: Sequence[tuple[PlatformSpec, Sequence[LayerBlob], Mapping[str, Any] | None]],
    *,
    attestation: bool = False,
    ref_name: str | None = "latest",
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Write a multi-platform OCI layout (an index of images) at ``path``; return the index digest.

    ``attestation=True`` adds, per image, a BuildKit-style ``unknown/unknown`` attestation manifest.
    """
    layout = _Layout(path)
    entries: list[dict[str, Any]] = []
    attestations: list[dict[str, Any]] = []
    for platform, layers, config in images:
        descriptor = layout.image(layers, config, platform, None)
        descriptor["platform"] = {"architecture": platform[1], "os": platform[0]}
        if len(platform) == 3:
            descriptor["platform"]["variant"] = platform[2]
        entries.append(descriptor)
        if attestation:
            attestations.append(_attestation(layout, descriptor))
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + attestations}
    if annotations:
        index["annotations"] = dict(annotations)
    raw = _canonical(index)
    descriptor = {"mediaType": OCI_INDEX, "digest": layout.put(raw), "size": len(raw)}
    layout.finish(descriptor, ref_name)
    return str(descriptor["digest"])


@dataclass(frozen=True)
class DockerArchive:
    """What :func:`write_docker_archive` wrote: the config digest and the layer diff_ids, for assertions."""

    path: Path
    config_digest: str
    diff_ids: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


def write_docker_archive(
    path: Path,
    layers: Sequence[LayerBlob],
    *,
    config: Mapping[str, Any] | None = None,
    repo_tags: Sequence[str] = ("test/app:latest",),
    platform: PlatformSpec = ("linux", "amd64"),
    members: Mapping[str, bytes | FileSpec] | None = None,
) -> DockerArchive:
    """Write a legacy ``docker save`` tar: ``<hex>.json`` config, ``<diffid>/layer.tar`` and ``manifest.json``.

    Layers are stored uncompressed, as ``docker save`` does. ``members`` adds or overrides raw archive
    members (e.g. a hostile ``manifest.json``).
    """
    config_raw = _merge_config(layers, platform, config)
    config_name = hashlib.sha256(config_raw).hexdigest() + ".json"
    files: dict[str, bytes | FileSpec] = {config_name: config_raw}
    layer_names = []
    for layer in layers:
        raw = _decompress(layer.data)
        name = f"{layer.diff_id.split(':', 1)[1]}/layer.tar"
        files[name] = raw
        layer_names.append(name)
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    files.update(members or {})
    path.write_bytes(tar_bytes(files))
    return DockerArchive(
        path=path,
        config_digest=_sha256(config_raw),
        diff_ids=tuple(layer.diff_id for layer in layers),
    )


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def layout_to_docker_archive(
    layout_dir: Path, archive: Path, *, repo_tags: Sequence[str] = ("test/app:latest",)
) -> None:
    """Pack an OCI layout into a tar the way Docker >= 25 saves: the layout plus a legacy ``manifest.json``."""
    files: dict[str, bytes | FileSpec] = {}
    for item in sorted(layout_dir.rglob("*")):
        if item.is_file():
            files[item.relative_to(layout_dir).as_posix()] = item.read_bytes()
    top = json.loads((layout_dir / "index.json").read_bytes())["manifests"][0]
    if top["mediaType"] == OCI_MANIFEST:
        blob = layout_dir / "blobs" / "sha256"
        manifest = json.loads((blob / top["digest"].split(":", 1)[1]).read_bytes())
        legacy = {
            "Config": "blobs/sha256/" + manifest["config"]["digest"].split(":", 1)[1],
            "RepoTags": list(repo_tags),
            "Layers": ["blobs/sha256/" + layer["digest"].split(":", 1)[1] for layer in manifest["layers"]],
        }
        files["manifest.json"] = json.dumps([legacy]).encode()
    archive.write_bytes(tar_bytes(files))
