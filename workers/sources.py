"""Where the pipeline reads an image from: a registry, an OCI layout directory, or a ``docker save`` archive."""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from workers.domain import (
    Descriptor,
    Digest,
    MediaType,
    is_repository_name,
    parse_digest,
    parse_reference,
    sha256_digest,
)
from workers.errors import IntegrityError, NotFound, UnsupportedMediaType
from workers.oci import MAX_MANIFEST_BYTES, parse_descriptor
from workers.registry import (
    BLOB_CHUNK,
    FetchedManifest,
    InvalidReference,
    RegistryClient,
    docker_config_credentials,
    verified_reader,
)
from workers.settings import Settings

log = logging.getLogger(__name__)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"  # docker save writes the full image name here
MAX_INDEX_JSON_BYTES = MAX_MANIFEST_BYTES
MAX_ARCHIVE_MEMBERS = 100_000
MAX_LINK_HOPS = 8
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


class ImageSource(Protocol):
    """What the pipeline needs from wherever an image lives; every byte it hands out is digest-verified."""

    @property
    def name(self) -> str:
        """Where the image comes from, for records: ``127.0.0.1:5000/team/app`` or ``oci:/path``."""
        ...

    @property
    def repository(self) -> str:
        """The repository name for records (``team/app``; derived for local sources)."""
        ...

    def get_manifest(self, reference: str) -> FetchedManifest:
        """The manifest or index for a tag, ref name or digest ("" = the source's default image)."""
        ...

    def get_blob(self, digest: Digest, *, max_bytes: int) -> bytes:
        """A whole blob, verified; IntegrityError when larger than ``max_bytes``."""
        ...

    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> AbstractContextManager[BinaryIO]:
        """A verifying stream over a blob (IntegrityError at EOF on a mismatch)."""
        ...


# ---------------------------------------------------------------------------------------------- registry


class RegistrySource:
    """One repository of a registry, read through a :class:`RegistryClient`."""

    def __init__(self, client: RegistryClient, repository: str, *, owns_client: bool = False) -> None:
        if not is_repository_name(repository):
            raise InvalidReference(f"not a valid repository name: {repository[:80]!r}")
        self.client = client
        self._repository = repository
        self._owns_client = owns_client

    @property
    def name(self) -> str:
        """``host:port/repository``."""
        return f"{self.client.base_url.split('://', 1)[1]}/{self._repository}"

    @property
    def repository(self) -> str:
        """The repository in the registry."""
        return self._repository

    def get_manifest(self, reference: str) -> FetchedManifest:
        """Fetch by tag or digest (``""`` means ``latest``)."""
        return self.client.get_manifest(self._repository, reference or "latest")

    def get_blob(self, digest: Digest, *, max_bytes: int) -> bytes:
        """A verified blob in memory."""
        return self.client.get_blob(self._repository, digest, max_bytes=max_bytes)

    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> AbstractContextManager[BinaryIO]:
        """A verifying stream over a blob."""
        return self.client.open_blob(self._repository, digest, expected_size=expected_size)

    def close(self) -> None:
        """Close the client when this source created it."""
        if self._owns_client:
            self.client.close()


# ---------------------------------------------------------------------------------------------- layouts


def _infer_manifest_media_type(raw: bytes, hint: str | None = None) -> str:
    """The ``mediaType`` a manifest declares, else ``hint``, else guessed from its shape (OCI allows omitting it)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError("manifest is not valid JSON") from None
    if not isinstance(data, dict):
        raise IntegrityError("manifest is not a JSON object")
    declared = data.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if hint:
        return hint
    return MediaType.OCI_INDEX if "manifests" in data else MediaType.OCI_MANIFEST


def _derived_repository(stem: str) -> str:
    """A valid repository name for a local source, from a file or directory name."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "image"
    candidate = f"local/{cleaned[:200]}"
    return candidate if is_repository_name(candidate) else "local/image"


@dataclass(frozen=True)
class _Blob:
    """Where a blob's bytes are inside a layout (``relpath``) or, for synthesised content, the bytes."""

    relpath: str | None = None
    data: bytes | None = None


class _LayoutSource:
    """Shared logic for sources that hold an OCI image layout (a directory, or inside an archive).

    Subclasses provide ``_exists``, ``_size`` and ``_open`` for layout-relative paths; every path they get
    is built here from a validated digest, never from a name found in the content.
    """

    _ref_name: str | None
    _top: tuple[Descriptor, ...]
    _synthetic: dict[Digest, bytes]

    def __init__(self, *, name: str, repository: str, ref_name: str | None) -> None:
        self._name = name
        self._repository = repository
        self._ref_name = ref_name or None
        self._top = ()
        self._synthetic = {}

    @property
    def name(self) -> str:
        """Where the image comes from."""
        return self._name

    @property
    def repository(self) -> str:
        """A repository name derived from the source (local sources have none of their own)."""
        return self._repository

    # Subclass hooks --------------------------------------------------------------------------------
    def _exists(self, relpath: str) -> bool:
        raise NotImplementedError

    def _open(self, relpath: str) -> AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release any open file."""

    # Layout reading --------------------------------------------------------------------------------
    def _read_small(self, relpath: str, cap: int, what: str) -> bytes:
        with self._open(relpath) as handle:
            data = handle.read(cap + 1)
        if len(data) > cap:
            raise IntegrityError(f"{what} is larger than {cap} bytes")
        return data

    def _load_layout(self) -> None:
        """Check ``oci-layout`` and read the top-level descriptors of ``index.json``."""
        if not self._exists("oci-layout") or not self._exists("index.json"):
            raise NotFound(f"{self._name}: not an OCI image layout (oci-layout or index.json missing)")
        try:
            marker = json.loads(self._read_small("oci-layout", 4096, "oci-layout"))
        except ValueError:
            raise IntegrityError(f"{self._name}: oci-layout is not JSON") from None
        if not isinstance(marker, dict) or not isinstance(marker.get("imageLayoutVersion"), str):
            raise IntegrityError(f"{self._name}: oci-layout has no imageLayoutVersion")
        raw = self._read_small("index.json", MAX_INDEX_JSON_BYTES, "index.json")
        try:
            index = json.loads(raw)
        except ValueError:
            raise IntegrityError(f"{self._name}: index.json is not JSON") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise IntegrityError(f"{self._name}: index.json has no 'manifests' list")
        self._top = tuple(parse_descriptor(d, f"index.json manifests[{i}]") for i, d in enumerate(index["manifests"]))

    def _pick_top(self, reference: str) -> Descriptor:
        """The index.json entry named ``reference`` (a ref name), or the only/only-named one for ""."""
        wanted = reference or self._ref_name
        if wanted:
            named = [
                d
                for d in self._top
                if wanted in (d.annotations.get(REF_NAME_ANNOTATION), d.annotations.get(CONTAINERD_NAME_ANNOTATION))
            ]
            if not named:
                raise NotFound(f"{self._name}: no image named {wanted[:80]!r} in index.json")
            return named[-1]  # a later entry with the same name replaces an earlier one (like a tag)
        if len(self._top) == 1:
            return self._top[0]
        if not self._top:
            raise NotFound(f"{self._name}: index.json lists no image")
        names = sorted({d.annotations.get(REF_NAME_ANNOTATION, "?") for d in self._top})
        raise NotFound(f"{self._name}: {len(self._top)} images in index.json; name one of {names[:10]}")

    def get_manifest(self, reference: str) -> FetchedManifest:
        """By digest, by ref name, or "" for the constructor's ref name / the only image."""
        hint: str | None = None
        if reference and ":" in reference:
            try:
                digest = parse_digest(reference)
            except ValueError:
                raise InvalidReference(f"not a valid digest: {reference[:80]!r}") from None
            hint = next((d.media_type for d in self._top if d.digest == digest), None)
        else:
            top = self._pick_top(reference)
            digest, hint = top.digest, top.media_type
        raw = self.get_blob(digest, max_bytes=MAX_MANIFEST_BYTES)
        return FetchedManifest(media_type=_infer_manifest_media_type(raw, hint), digest=digest, raw=raw)

    def get_blob(self, digest: Digest, *, max_bytes: int) -> bytes:
        """A verified blob in memory."""
        with self.open_blob(digest) as stream:
            data = stream.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise IntegrityError(f"blob {digest} is larger than {max_bytes} bytes")
            return data

    @contextmanager
    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> Iterator[BinaryIO]:
        """A verifying stream over ``blobs/<alg>/<hex>`` (the path comes from the validated digest only)."""
        try:
            checked = parse_digest(digest)
        except ValueError:
            raise InvalidReference(f"not a valid digest: {str(digest)[:80]!r}") from None
        what = f"{self._name} blob {checked}"
        synthetic = self._synthetic.get(checked)
        if synthetic is not None:
            with verified_reader(iter((synthetic,)), checked, expected_size=expected_size, what=what) as stream:
                yield stream
            return
        algorithm, hex_digest = checked.split(":", 1)
        relpath = f"blobs/{algorithm}/{hex_digest}"
        if not self._exists(relpath):
            raise NotFound(f"{what} is not in the layout")
        with (
            self._open(relpath) as handle,
            verified_reader(_chunks(handle), checked, expected_size=expected_size, what=what) as stream,
        ):
            yield stream


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(BLOB_CHUNK):
        yield chunk


class OciLayoutSource(_LayoutSource):
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``)."""

    def __init__(self, path: Path, ref_name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise NotFound(f"OCI layout directory {str(path)[:200]!r} does not exist")
        super().__init__(
            name=f"oci:{self.path}" + (f":{ref_name}" if ref_name else ""),
            repository=_derived_repository(self.path.resolve().name),
            ref_name=ref_name,
        )
        self._load_layout()

    def _exists(self, relpath: str) -> bool:
        return (self.path / relpath).is_file()

    def _open(self, relpath: str) -> AbstractContextManager[IO[bytes]]:
        return (self.path / relpath).open("rb")


class DockerArchiveSource(_LayoutSource):
    """A ``docker save`` tar: the newer format (an OCI layout inside) or the legacy ``manifest.json`` format.

    Member names come from the archive and are attacker-controlled: they are only ever looked up in the
    tar's own member table, never joined to a host path. For the legacy format an OCI manifest is
    synthesised (config and layers addressed by their sha256), so the pipeline sees the usual shape.
    """

    def __init__(self, path: Path, ref: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"docker archive {str(path)[:200]!r} does not exist")
        try:
            self._tar = tarfile.open(self.path, mode="r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise IntegrityError(f"{path}: not a readable tar archive ({exc})") from None
        super().__init__(
            name=f"docker-archive:{self.path}" + (f":{ref}" if ref else ""),
            repository=_derived_repository(self.path.stem),
            ref_name=None,
        )
        self._blob_members: dict[Digest, str] = {}  # legacy layers: computed digest -> archive member name
        try:
            self._load(ref)
        except BaseException:
            self._tar.close()
            raise

    def _load(self, ref: str | None) -> None:
        self._members = self._index_members()
        if self._exists("index.json") and self._exists("oci-layout"):  # Docker >= 25: prefer the OCI layout
            self._ref_name = ref
            self._load_layout()
            names = [d.annotations.get(CONTAINERD_NAME_ANNOTATION, "") for d in self._top]
            self._repository = self._repository_from_names(names) or self._repository
        elif self._exists("manifest.json"):
            self._load_legacy(ref)
        else:
            raise UnsupportedMediaType(f"{self._name}: neither index.json nor manifest.json in the archive")

    def close(self) -> None:
        """Close the archive."""
        self._tar.close()

    def _index_members(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        try:
            for count, member in enumerate(self._tar, start=1):
                if count > MAX_ARCHIVE_MEMBERS:
                    raise IntegrityError(f"{self._name}: more than {MAX_ARCHIVE_MEMBERS} archive members")
                name = posixpath.normpath(member.name.lstrip("/")) if member.name else ""
                if member.isfile() or member.issym() or member.islnk():
                    members[name] = member  # a later member of the same name replaces an earlier one
        except tarfile.TarError as exc:
            raise IntegrityError(f"{self._name}: corrupt archive ({exc})") from None
        return members

    def _resolve(self, relpath: str) -> tarfile.TarInfo | None:
        """The regular-file member ``relpath`` names, following in-archive links a bounded number of times."""
        name = posixpath.normpath(relpath)
        for _ in range(MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None:
                return None
            if member.isfile():
                return member
            base = "" if member.islnk() else posixpath.dirname(name)
            name = posixpath.normpath(posixpath.join(base, member.linkname.lstrip("/")))
        return None

    def _exists(self, relpath: str) -> bool:
        return self._resolve(relpath) is not None

    def _open(self, relpath: str) -> AbstractContextManager[IO[bytes]]:
        member = self._resolve(relpath)
        handle = self._tar.extractfile(member) if member is not None else None
        if handle is None:
            raise NotFound(f"{self._name}: no member {relpath[:200]!r}")
        return handle

    @staticmethod
    def _repository_from_names(names: list[str]) -> str:
        for text in names:
            try:
                return parse_reference(text).repository
            except ValueError:
                continue
        return ""

    def _load_legacy(self, ref: str | None) -> None:
        """Read ``manifest.json`` and synthesise an OCI manifest for the chosen image."""
        try:
            entries = json.loads(self._read_small("manifest.json", MAX_INDEX_JSON_BYTES, "manifest.json"))
        except ValueError:
            raise IntegrityError(f"{self._name}: manifest.json is not JSON") from None
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise IntegrityError(f"{self._name}: manifest.json must be a non-empty list of objects")
        entry = self._pick_legacy(entries, ref)
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise IntegrityError(f"{self._name}: manifest.json entry needs 'Config' and 'Layers'")
        if not all(isinstance(n, str) for n in layer_names):
            raise IntegrityError(f"{self._name}: manifest.json 'Layers' must be strings")

        config_raw = self._read_small(config_name, 16 * 1024 * 1024, "image config")
        config_digest = sha256_digest(config_raw)
        self._synthetic[config_digest] = config_raw
        layers: list[dict[str, Any]] = []
        for layer_name in layer_names:
            if self._resolve(layer_name) is None:
                raise NotFound(f"{self._name}: layer member {layer_name[:200]!r} is missing")
            digest, size, media_type = self._describe_member(layer_name)
            self._blob_members[digest] = layer_name
            layers.append({"mediaType": media_type, "digest": digest, "size": size})
        manifest = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "config": {"mediaType": MediaType.OCI_CONFIG.value, "digest": config_digest, "size": len(config_raw)},
            "layers": layers,
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        digest = sha256_digest(raw)
        self._synthetic[digest] = raw
        self._top = (Descriptor(media_type=MediaType.OCI_MANIFEST, digest=digest, size=len(raw)),)
        tags = entry.get("RepoTags")
        if isinstance(tags, list):
            self._repository = self._repository_from_names([t for t in tags if isinstance(t, str)]) or self._repository

    def _pick_legacy(self, entries: list[dict[str, Any]], ref: str | None) -> dict[str, Any]:
        if ref:
            for entry in entries:
                tags = entry.get("RepoTags")
                if isinstance(tags, list) and ref in tags:
                    return entry
            raise NotFound(f"{self._name}: no image tagged {ref[:80]!r} in manifest.json")
        if len(entries) > 1:
            raise NotFound(f"{self._name}: {len(entries)} images in the archive; name one as docker-archive:FILE:REF")
        return entries[0]

    def _describe_member(self, name: str) -> tuple[Digest, int, str]:
        """sha256, size and (sniffed) media type of a layer member, read once as a stream."""
        hasher = hashlib.sha256()
        size = 0
        head = b""
        with self._open(name) as handle:
            for chunk in _chunks(handle):
                if not head:
                    head = chunk[:4]
                hasher.update(chunk)
                size += len(chunk)
        if head[:2] == b"\x1f\x8b":
            media_type = OCI_LAYER_GZIP
        elif head[:4] == b"\x28\xb5\x2f\xfd":
            media_type = OCI_LAYER_ZSTD
        else:
            media_type = OCI_LAYER_TAR
        return Digest("sha256:" + hasher.hexdigest()), size, media_type

    @contextmanager
    def open_blob(self, digest: Digest, *, expected_size: int | None = None) -> Iterator[BinaryIO]:
        """Legacy layers by their computed digest; everything else as in an OCI layout."""
        member = self._blob_members.get(digest)
        if member is None:
            with super().open_blob(digest, expected_size=expected_size) as stream:
                yield stream
            return
        what = f"{self._name} layer {digest}"
        with (
            self._open(member) as handle,
            verified_reader(_chunks(handle), digest, expected_size=expected_size, what=what) as stream,
        ):
            yield stream


# ---------------------------------------------------------------------------------------------- open_source


def _split_local(spec: str, exists: Callable[[Path], bool]) -> tuple[Path, str | None]:
    """``path[:ref]``: the whole string when it names an existing path, else split at the first ':' that
    leaves an existing path before it (paths may contain ':', and so may refs such as ``repo:tag``)."""
    if exists(Path(spec)):
        return Path(spec), None
    for position, char in enumerate(spec):
        if char == ":" and position and exists(Path(spec[:position])):
            return Path(spec[:position]), spec[position + 1 :] or None
    return Path(spec), None


def open_source(ref: str, settings: Settings) -> tuple[ImageSource, str]:
    """Open the image source ``ref`` names and return ``(source, reference)`` for ``source.get_manifest``.

    - ``oci:<dir>[:<ref-name>]`` → (:class:`OciLayoutSource`, ref-name or ``""``);
    - ``docker-archive:<file>[:<repo:tag>]`` → (:class:`DockerArchiveSource`, ``""``);
    - ``[host[:port]/]repo[:tag][@digest]`` → (:class:`RegistrySource`, digest, else tag, else ``latest``).
      Without a host, or with the configured registry's host, it reads ``settings.registry_url`` with the
      configured credentials; another host is read over https (http for loopback hosts), with Docker
      config credentials for that host when allowed. Sources with a ``close()`` should be closed.
    """
    if ref.startswith("oci:"):
        path, ref_name = _split_local(ref.removeprefix("oci:"), Path.is_dir)
        return OciLayoutSource(path, ref_name), ref_name or ""
    if ref.startswith("docker-archive:"):
        path, image = _split_local(ref.removeprefix("docker-archive:"), Path.is_file)
        return DockerArchiveSource(path, image), ""
    try:
        parsed = parse_reference(ref)
    except ValueError as exc:
        raise InvalidReference(str(exc)) from None
    if parsed.registry is None or parsed.registry == settings.registry_host:
        client = RegistryClient.from_settings(settings)
    else:
        scheme = "http" if parsed.registry.rsplit(":", 1)[0] in LOOPBACK_HOSTS else "https"
        credentials = None
        if settings.registry_use_docker_config:
            credentials = docker_config_credentials(parsed.registry)
        client = RegistryClient(
            f"{scheme}://{parsed.registry}", credentials=credentials, timeout=settings.registry_timeout
        )
    return RegistrySource(client, parsed.repository, owns_client=True), parsed.reference
