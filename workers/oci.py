"""Strict parsing of OCI/Docker manifests, indexes and image configs, and history-to-layer alignment."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.domain import (
    IMAGE_CONFIG_MEDIA_TYPES,
    IMAGE_MANIFEST_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    Descriptor,
    Digest,
    MediaType,
    Platform,
    parse_digest,
)
from workers.errors import IntegrityError, UnsupportedMediaType

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit for manifests
MAX_CONFIG_BYTES = 16 * 1024 * 1024
ATTESTATION_REFERENCE_TYPE = "attestation-manifest"


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image (or artifact) manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        """True when the config is an image config (not an artifact such as a signature or SBOM)."""
        return self.config.media_type in IMAGE_CONFIG_MEDIA_TYPES and self.artifact_type is None


@dataclass(frozen=True)
class ImageIndex:
    """A multi-platform index or Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def runnable(self) -> tuple[Descriptor, ...]:
        """Children that are platform images: skips attestation entries and ``unknown/unknown``."""
        out = []
        for child in self.manifests:
            if child.annotations.get("vnd.docker.reference.type") == ATTESTATION_REFERENCE_TYPE:
                continue
            if child.platform is not None and not child.platform.runnable:
                continue
            if child.media_type not in IMAGE_MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
                continue
            out.append(child)
        return tuple(out)

    def attestations(self) -> tuple[Descriptor, ...]:
        """BuildKit attestation manifests riding in this index."""
        return tuple(
            c
            for c in self.manifests
            if c.annotations.get("vnd.docker.reference.type") == ATTESTATION_REFERENCE_TYPE
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One ``history`` entry of an image config."""

    created_by: str | None
    empty_layer: bool
    created: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class ImageConfig:
    """The fields of an image config that Tollgate reads; ``raw`` keeps the rest."""

    os: str
    architecture: str
    variant: str | None
    user: str | None
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    labels: Mapping[str, str]
    working_dir: str | None
    exposed_ports: tuple[str, ...]
    volumes: tuple[str, ...]
    diff_ids: tuple[Digest, ...]
    history: tuple[HistoryEntry, ...]
    created: str | None
    raw: Mapping[str, Any]

    @property
    def platform(self) -> Platform:
        """The platform this config claims."""
        return Platform(self.os, self.architecture, self.variant)


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"{what} is not a JSON object")
    return data


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise IntegrityError(f"{what} must be a map of strings")
    return dict(value)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # tolerated: some tools write a shell-form string
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise IntegrityError(f"{what} must be a list of strings")
    return tuple(value)


def parse_platform(value: Any) -> Platform | None:
    """Parse a descriptor or config platform object."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise IntegrityError("platform must be an object")
    os_, arch = value.get("os"), value.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise IntegrityError("platform needs string 'os' and 'architecture'")
    variant = value.get("variant")
    return Platform(os_, arch, variant if isinstance(variant, str) else None)


def parse_descriptor(value: Any, what: str = "descriptor") -> Descriptor:
    """Parse and validate one OCI descriptor."""
    if not isinstance(value, dict):
        raise IntegrityError(f"{what} must be an object")
    media_type = value.get("mediaType")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise IntegrityError(f"{what} has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise IntegrityError(f"{what} has an invalid size")
    try:
        digest = parse_digest(value.get("digest", ""))
    except ValueError as exc:
        raise IntegrityError(f"{what}: {exc}") from None
    urls = value.get("urls")
    artifact_type = value.get("artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=parse_platform(value.get("platform")),
        annotations=_str_map(value.get("annotations"), f"{what} annotations"),
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        urls=_str_list(urls, f"{what} urls"),
    )


def parse_manifest(media_type: str | None, raw: bytes) -> ImageManifest | ImageIndex:
    """Parse manifest bytes; the ``mediaType`` field wins over the transport's Content-Type when present."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    data = _load_json(raw, "manifest")
    declared = data.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else media_type
    if kind is None:  # OCI allows omitting mediaType; infer from the shape
        kind = MediaType.OCI_INDEX if "manifests" in data else MediaType.OCI_MANIFEST
    if data.get("schemaVersion") != 2:
        raise UnsupportedMediaType(f"manifest schemaVersion {data.get('schemaVersion')!r} is not supported")
    subject = parse_descriptor(data["subject"], "subject") if data.get("subject") is not None else None
    annotations = _str_map(data.get("annotations"), "manifest annotations")
    if kind in INDEX_MEDIA_TYPES:
        children = data.get("manifests")
        if not isinstance(children, list):
            raise IntegrityError("index has no 'manifests' list")
        return ImageIndex(
            media_type=kind,
            manifests=tuple(parse_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)),
            subject=subject,
            annotations=annotations,
        )
    if kind in IMAGE_MANIFEST_MEDIA_TYPES:
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise IntegrityError("manifest has no 'layers' list")
        artifact_type = data.get("artifactType")
        return ImageManifest(
            media_type=kind,
            config=parse_descriptor(data.get("config"), "config"),
            layers=tuple(parse_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
            subject=subject,
            annotations=annotations,
        )
    raise UnsupportedMediaType(f"unsupported manifest media type {str(kind)[:100]!r}")


def parse_config(raw: bytes) -> ImageConfig:
    """Parse an image config; any optional field may be null, unknown fields are ignored."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise IntegrityError(f"image config is larger than {MAX_CONFIG_BYTES} bytes")
    data = _load_json(raw, "image config")
    runtime = data.get("config") or {}
    if not isinstance(runtime, dict):
        raise IntegrityError("image config 'config' must be an object")
    rootfs = data.get("rootfs") or {}
    if not isinstance(rootfs, dict):
        raise IntegrityError("image config 'rootfs' must be an object")
    try:
        diff_ids = tuple(parse_digest(d) for d in _str_list(rootfs.get("diff_ids"), "rootfs.diff_ids"))
    except ValueError as exc:
        raise IntegrityError(f"rootfs.diff_ids: {exc}") from None
    history_raw = data.get("history") or []
    if not isinstance(history_raw, list):
        raise IntegrityError("image config 'history' must be a list")
    history = []
    for i, entry in enumerate(history_raw):
        if not isinstance(entry, dict):
            raise IntegrityError(f"history[{i}] must be an object")
        created_by = entry.get("created_by")
        history.append(
            HistoryEntry(
                created_by=created_by if isinstance(created_by, str) else None,
                empty_layer=entry.get("empty_layer") is True,
                created=entry.get("created") if isinstance(entry.get("created"), str) else None,
                comment=entry.get("comment") if isinstance(entry.get("comment"), str) else None,
            )
        )

    def opt_str(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    ports = runtime.get("ExposedPorts") or {}
    volumes = runtime.get("Volumes") or {}
    return ImageConfig(
        os=opt_str(data.get("os")) or "unknown",
        architecture=opt_str(data.get("architecture")) or "unknown",
        variant=opt_str(data.get("variant")),
        user=opt_str(runtime.get("User")),
        entrypoint=_str_list(runtime.get("Entrypoint"), "config.Entrypoint"),
        cmd=_str_list(runtime.get("Cmd"), "config.Cmd"),
        env=_str_list(runtime.get("Env"), "config.Env"),
        labels=_str_map(runtime.get("Labels"), "config.Labels"),
        working_dir=opt_str(runtime.get("WorkingDir")),
        exposed_ports=tuple(sorted(ports)) if isinstance(ports, dict) else (),
        volumes=tuple(sorted(volumes)) if isinstance(volumes, dict) else (),
        diff_ids=diff_ids,
        history=tuple(history),
        created=opt_str(data.get("created")),
        raw=data,
    )


def align_history(history: Sequence[HistoryEntry], layer_count: int) -> tuple[tuple[str | None, ...], bool]:
    """Map each layer index to the ``created_by`` that made it.

    Each history entry without ``empty_layer`` consumes the next layer. When the counts disagree the
    alignment is reported unavailable (all ``None``, False) rather than guessed.
    """
    producing = [h for h in history if not h.empty_layer]
    if not history or len(producing) != layer_count:
        return tuple(None for _ in range(layer_count)), False
    return tuple(h.created_by or "" for h in producing), True


def empty_steps(history: Sequence[HistoryEntry]) -> tuple[str, ...]:
    """``created_by`` of history entries that made no layer (ENV, CMD, LABEL …): config-only build steps."""
    return tuple(h.created_by for h in history if h.empty_layer and h.created_by)
