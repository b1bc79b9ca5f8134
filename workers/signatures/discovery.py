"""Find an image's signatures and attestations in the registry, read-only: cosign legacy tags and OCI 1.1 referrers.

Where cosign puts them (shared/docs/PROTOCOLS.md §4):

1. legacy tags ``sha256-<hex>.sig`` and ``sha256-<hex>.att``: one image manifest each, one signature per layer,
   the signature material in the layer annotations and the payload (or DSSE envelope) as the blob;
2. Sigstore bundles as OCI 1.1 referrers (cosign v3's default): manifests with ``artifactType``
   ``application/vnd.dev.sigstore.bundle.v0.3+json``, a ``subject`` naming the image and the bundle as their
   one layer, listed by the referrers API, or (distribution has no such API) by the index at tag
   ``sha256-<hex>`` that clients maintain;
3. Notation signatures, also referrers (``artifactType application/vnd.cncf.notary.signature``, one JWS or
   COSE envelope layer), found the same two ways.

Everything read is digest-verified by the registry client and size-capped. Hostile or broken content (bad
JSON, wrong media types, a wrong subject, huge or missing blobs) becomes a :class:`DiscoveryNote` and is
skipped; only a registry that cannot be reached (transient) or refuses our credentials raises, so that the
job retries instead of recording "unsigned".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.domain import Digest, MediaType, parse_digest
from workers.errors import IntegrityError, NotFound, RegistryProtocolError, UnsupportedMediaType
from workers.oci import MAX_MANIFEST_BYTES
from workers.provenance.publish import is_tollgate_layer
from workers.registry import RegistryClient
from workers.signatures.keyed import DSSE_MEDIA_TYPE
from workers.signatures.model import printable
from workers.signatures.notation import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE
from workers.signatures.simplesigning import MAX_PAYLOAD_BYTES, SIMPLE_SIGNING_MEDIA_TYPE

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGNATURE_ARTIFACT_TYPES = frozenset({BUNDLE_ARTIFACT_TYPE, NOTATION_ARTIFACT_TYPE})
NOTATION_ENVELOPE_TYPES = frozenset({JWS_MEDIA_TYPE, COSE_MEDIA_TYPE})
MAX_NOTATION_BYTES = 1024 * 1024
MAX_SIGNATURE_LAYERS = 64  # co-signers append layers; more than this is an attack on our time, not signing
MAX_REFERRERS = 256
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024  # attestations carry SBOMs and provenance
MAX_BUNDLE_BYTES = 16 * 1024 * 1024

_SUBJECT_TAG_RE = re.compile(r"^sha256-([0-9a-f]{64})(\.sig|\.att)?$")


@dataclass(frozen=True)
class DiscoveryNote:
    """Something found that is not usable, and why (recorded, never a pass)."""

    where: str
    reason: str


@dataclass(frozen=True)
class LegacyLayer:
    """One layer of a legacy ``.sig``/``.att`` manifest: its annotations and its verified blob."""

    tag: str  # sha256-<hex>.sig or .att
    manifest_digest: Digest
    index: int  # position in the manifest's layers
    media_type: str
    digest: Digest
    annotations: Mapping[str, str]
    blob: bytes  # the simple-signing payload (.sig) or the DSSE envelope (.att)

    @property
    def source(self) -> str:
        """Where it came from, for the check record: ``sha256-<hex>.sig@sha256:…#0``."""
        return f"{self.tag}@{self.manifest_digest}#{self.index}"


@dataclass(frozen=True)
class BundleReferrer:
    """A Sigstore bundle attached to the image as an OCI 1.1 referrer."""

    manifest_digest: Digest
    found_via: str  # "referrers API" or "tag sha256-<hex>"
    media_type: str  # of the bundle layer
    digest: Digest  # of the bundle layer
    annotations: Mapping[str, str]  # of the referrer manifest (dev.sigstore.bundle.predicateType, …)
    bundle: bytes

    @property
    def source(self) -> str:
        """The referrer manifest digest (the check record's ``source``)."""
        return self.manifest_digest

    @property
    def predicate_type(self) -> str | None:
        """The predicate type cosign announces in the manifest annotations (unverified: the bundle decides)."""
        return self.annotations.get("dev.sigstore.bundle.predicateType")


@dataclass(frozen=True)
class NotationReferrer:
    """A Notation signature attached to the image as an OCI 1.1 referrer: its envelope (JWS or COSE)."""

    manifest_digest: Digest
    found_via: str
    media_type: str  # of the envelope layer
    digest: Digest
    annotations: Mapping[str, str]
    envelope: bytes

    @property
    def source(self) -> str:
        """The referrer manifest digest (the check record's ``source``)."""
        return self.manifest_digest


@dataclass(frozen=True)
class Discovered:
    """Everything signature-like found for one image digest."""

    subject: Digest
    signatures: tuple[LegacyLayer, ...] = ()
    attestations: tuple[LegacyLayer, ...] = ()
    bundles: tuple[BundleReferrer, ...] = ()
    notes: tuple[DiscoveryNote, ...] = ()
    referrers_api: bool = False  # whether the registry answered the referrers API
    notations: tuple[NotationReferrer, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing usable was found."""
        return not (self.signatures or self.attestations or self.bundles or self.notations)


# ---------------------------------------------------------------------------------------------- re-evaluation


def subject_of_tag(tag: str) -> Digest | None:
    """The image digest whose signatures a push of ``tag`` changes: ``sha256-<hex>``, ``.sig``, ``.att``."""
    match = _SUBJECT_TAG_RE.match(tag) if isinstance(tag, str) else None
    return Digest(f"sha256:{match.group(1)}") if match else None


def subject_of_manifest(raw: bytes) -> Digest | None:
    """The ``subject`` digest of a manifest (an OCI 1.1 referrer), or None when it has none or is not JSON."""
    if len(raw) > MAX_MANIFEST_BYTES:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested arrays
        return None
    subject = document.get("subject") if isinstance(document, dict) else None
    value = subject.get("digest") if isinstance(subject, dict) else None
    try:
        return parse_digest(value) if isinstance(value, str) else None
    except ValueError:
        return None


def signature_subject(*, tag: str | None = None, manifest: bytes | None = None) -> Digest | None:
    """Which image digest's signatures must be re-evaluated after a push of ``tag`` and/or ``manifest``.

    Signatures arrive after the image (the image's own push finds none), so the webhook asks this for every
    push: a ``sha256-<hex>.sig``/``.att``/``sha256-<hex>`` tag or a manifest with ``subject`` names the image.
    The manifest's ``subject`` wins when both are given (a referrer pushed under an unrelated tag).
    """
    if manifest is not None:
        found = subject_of_manifest(manifest)
        if found is not None:
            return found
    return subject_of_tag(tag) if tag is not None else None


# ---------------------------------------------------------------------------------------------- discovery


def discover(client: RegistryClient, repository: str, subject: Digest) -> Discovered:
    """Find the legacy ``.sig``/``.att`` layers and the bundle and Notation referrers of ``repository@subject``."""
    search = _Search(client, repository, subject)
    base = "sha256-" + subject.removeprefix("sha256:")
    if subject.startswith("sha256:"):  # cosign names tags by the digest; sha512 names exceed the tag grammar
        search.legacy(f"{base}.sig", SIMPLE_SIGNING_MEDIA_TYPE, MAX_PAYLOAD_BYTES, search.signatures)
        search.legacy(f"{base}.att", DSSE_MEDIA_TYPE, MAX_ENVELOPE_BYTES, search.attestations)
    search.referrers(base)
    return search.result()


@dataclass
class _Search:
    """One discovery run: the registry, the image, and what was found so far."""

    client: RegistryClient
    repository: str
    subject: Digest
    signatures: list[LegacyLayer] = field(default_factory=list)
    attestations: list[LegacyLayer] = field(default_factory=list)
    bundles: list[BundleReferrer] = field(default_factory=list)
    notations: list[NotationReferrer] = field(default_factory=list)
    notes: list[DiscoveryNote] = field(default_factory=list)
    referrers_api: bool = False

    def note(self, where: str, reason: str) -> None:
        """Record why something found is not usable."""
        log.info("signature discovery for %s: %s: %s", self.subject, where, reason)
        self.notes.append(DiscoveryNote(where, reason))

    def result(self) -> Discovered:
        """The frozen record."""
        return Discovered(
            self.subject,
            tuple(self.signatures),
            tuple(self.attestations),
            tuple(self.bundles),
            tuple(self.notes),
            self.referrers_api,
            tuple(self.notations),
        )

    def _manifest(
        self,
        reference: str,
        where: str,
        *,
        missing: str | None = None,
    ) -> tuple[Digest, dict[str, Any]] | None:
        """The verified digest and parsed manifest at ``reference``, or None (absent: noted only when ``missing``)."""
        try:
            fetched = self.client.get_manifest(self.repository, reference)
        except NotFound:
            if missing:
                self.note(where, missing)
            return None
        except (IntegrityError, RegistryProtocolError, UnsupportedMediaType) as exc:
            self.note(where, f"manifest unreadable: {exc}")
            return None
        try:
            document = json.loads(fetched.raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.note(where, "manifest is not JSON")
            return None
        if not isinstance(document, dict):
            self.note(where, "manifest is not a JSON object")
            return None
        return fetched.digest, document

    def _descriptor(self, value: Any, where: str) -> tuple[str, Digest, int, dict[str, str]] | None:
        """(mediaType, digest, size, annotations) of a descriptor, or None with a note."""
        if not isinstance(value, dict):
            self.note(where, "descriptor is not an object")
            return None
        media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
        annotations = value.get("annotations") or {}
        if not isinstance(media_type, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            self.note(where, "descriptor lacks a mediaType or a valid size")
            return None
        try:
            checked = parse_digest(digest) if isinstance(digest, str) else None
        except ValueError:
            checked = None
        if checked is None:
            self.note(where, "descriptor has no valid digest")
            return None
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            self.note(where, "descriptor annotations are not a string map")
            return None
        return media_type, checked, size, dict(annotations)

    def _blob(self, digest: Digest, size: int, cap: int, where: str) -> bytes | None:
        """A verified blob of at most ``cap`` bytes, or None with a note (too large, missing, corrupt)."""
        if size > cap:
            self.note(where, f"blob is {size} bytes, more than the {cap} allowed")
            return None
        try:
            data = self.client.get_blob(self.repository, digest, max_bytes=cap)
        except NotFound:
            self.note(where, f"blob {digest} is missing")
            return None
        except (IntegrityError, RegistryProtocolError) as exc:
            self.note(where, f"blob unreadable: {exc}")
            return None
        if len(data) != size:
            self.note(where, f"blob has {len(data)} bytes, its descriptor says {size}")
            return None
        return data

    def _layer(
        self, value: Any, media_type: str, cap: int, where: str, described_at: str
    ) -> tuple[Digest, dict[str, str], bytes] | None:
        """A layer descriptor of ``media_type`` and its verified blob (digest, annotations, blob), or None with a note.

        Descriptor problems are noted at ``described_at``, the rest at ``where``.
        """
        described = self._descriptor(value, described_at)
        if described is None:
            return None
        layer_type, digest, size, annotations = described
        if layer_type != media_type:
            # The note names the layer once: in its place (``… layer 0``) or else in its reason.
            what = "media type" if where == described_at else "layer media type"
            self.note(where, f"{what} {_short(layer_type)}, expected {media_type}")
            return None
        blob = self._blob(digest, size, cap, where)
        return None if blob is None else (digest, annotations, blob)

    def legacy(self, tag: str, media_type: str, cap: int, into: list[LegacyLayer]) -> None:
        """The layers of the ``.sig``/``.att`` manifest at ``tag`` whose media type is ``media_type``."""
        loaded = self._manifest(tag, tag)
        if loaded is None:
            return
        digest, manifest = loaded
        if manifest.get("mediaType", MediaType.OCI_MANIFEST) not in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST):
            self.note(tag, f"not an image manifest ({_short(manifest.get('mediaType'))})")
            return
        layers = manifest.get("layers")
        if not isinstance(layers, list) or not layers:
            self.note(tag, "manifest has no layers")
            return
        if len(layers) > MAX_SIGNATURE_LAYERS:
            self.note(tag, f"{len(layers)} layers; only the first {MAX_SIGNATURE_LAYERS} are read")
        for index, value in enumerate(layers[:MAX_SIGNATURE_LAYERS]):
            annotations = value.get("annotations") if isinstance(value, dict) else None
            if isinstance(annotations, dict) and is_tollgate_layer(annotations):
                continue  # Tollgate's own verdict: about the image, not a signature of it (and never trusted)
            where = f"{tag} layer {index}"
            layer = self._layer(value, media_type, cap, where, where)
            if layer is not None:
                layer_digest, annotations, blob = layer
                into.append(LegacyLayer(tag, digest, index, media_type, layer_digest, annotations, blob))

    def referrers(self, base: str) -> None:
        """Signature referrers from the referrers API, else from the fallback index at tag ``sha256-<hex>``."""
        try:
            # Unfiltered: Sigstore bundles and Notation signatures both count, and a registry may not filter.
            listed = self.client.referrers(self.repository, self.subject)
        except (IntegrityError, RegistryProtocolError) as exc:
            self.note("referrers API", f"unusable answer: {exc}")
            listed = None
        if listed is not None:
            self.referrers_api = True
            via = "referrers API"
            entries = listed
        else:
            if not self.subject.startswith("sha256:"):
                return
            via = f"tag {base}"
            loaded = self._manifest(base, via)
            if loaded is None:
                return
            _, index = loaded
            if index.get("mediaType") != MediaType.OCI_INDEX:
                self.note(via, f"not an OCI image index ({_short(index.get('mediaType'))}); no referrers")
                return
            manifests = index.get("manifests")
            if not isinstance(manifests, list):
                self.note(via, "index has no manifests list")
                return
            entries = manifests
        if len(entries) > MAX_REFERRERS:
            self.note(via, f"{len(entries)} referrers; only the first {MAX_REFERRERS} are read")
        seen: set[Digest] = set()
        for position, entry in enumerate(entries[:MAX_REFERRERS]):
            where = f"{via} entry {position}"
            described = self._descriptor(entry, where)
            if described is None:
                continue
            _, digest, _, _ = described
            artifact_type = entry.get("artifactType")
            if artifact_type is not None and artifact_type not in SIGNATURE_ARTIFACT_TYPES:
                continue  # other referrers (SBOMs, scan reports) are not signatures; not an error
            if digest in seen:
                continue
            seen.add(digest)
            self.referrer(digest, via)

    def referrer(self, digest: Digest, via: str) -> None:
        """One referrer manifest: a Sigstore bundle or a Notation signature about ``subject``, else a note."""
        where = f"referrer {digest}"
        loaded = self._manifest(digest, where, missing=f"listed by the {via} but missing")
        if loaded is None:
            return
        manifest_digest, manifest = loaded
        if manifest.get("mediaType") != MediaType.OCI_MANIFEST:
            self.note(where, f"not an OCI image manifest ({_short(manifest.get('mediaType'))})")
            return
        config = manifest.get("config")
        artifact_type = manifest.get("artifactType") or (config.get("mediaType") if isinstance(config, dict) else None)
        if artifact_type not in SIGNATURE_ARTIFACT_TYPES:
            self.note(where, f"artifactType is {_short(artifact_type)}, not a Sigstore bundle or Notation signature")
            return
        named = manifest.get("subject")
        named_digest = named.get("digest") if isinstance(named, dict) else None
        if named_digest != self.subject:
            self.note(where, f"ignored: its subject is {_short(named_digest)}, not {self.subject}")
            return
        layers = manifest.get("layers")
        what = "bundle" if artifact_type == BUNDLE_ARTIFACT_TYPE else "Notation signature"
        if not isinstance(layers, list) or len(layers) != 1:
            self.note(where, f"a {what} referrer must have exactly one layer")
            return
        annotations = manifest.get("annotations")
        clean = (
            {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(annotations, dict)
            else {}
        )
        if artifact_type == BUNDLE_ARTIFACT_TYPE:
            layer = self._layer(layers[0], BUNDLE_ARTIFACT_TYPE, MAX_BUNDLE_BYTES, where, f"{where} layer 0")
            if layer is None:
                return
            layer_digest, _, bundle = layer
            self.bundles.append(BundleReferrer(manifest_digest, via, BUNDLE_ARTIFACT_TYPE, layer_digest, clean, bundle))
            return
        envelope_type = layers[0].get("mediaType") if isinstance(layers[0], dict) else None
        if envelope_type not in NOTATION_ENVELOPE_TYPES:
            self.note(f"{where} layer 0", f"media type {_short(envelope_type)}, expected {JWS_MEDIA_TYPE}")
            return
        layer = self._layer(layers[0], str(envelope_type), MAX_NOTATION_BYTES, where, f"{where} layer 0")
        if layer is None:
            return
        layer_digest, _, envelope = layer
        self.notations.append(NotationReferrer(manifest_digest, via, str(envelope_type), layer_digest, clean, envelope))


def _short(value: Any) -> str:
    return printable(value, 120)
