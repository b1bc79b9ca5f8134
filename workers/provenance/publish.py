"""Publish the provenance statement and the signed verdict next to the image in the registry, idempotently.

Where each goes (shared/docs/PROTOCOLS.md §2, §4):

1. both as OCI 1.1 referrer artifact manifests (``subject`` = the image, empty config, one DSSE layer) pushed
   by digest, with Tollgate's own ``artifactType`` so that Tollgate (and anyone) can tell them apart;
2. listed in the ``sha256-<hex>`` fallback index when the registry has no referrers API (distribution):
   other entries (cosign's bundles, SBOMs) are kept, Tollgate's previous ones replaced;
3. the verdict also as one layer of the legacy ``sha256-<hex>.att`` manifest, the form
   ``cosign verify-attestation --key tollgate.pub --insecure-ignore-tlog`` verifies without a transparency log
   (other layers, e.g. cosign's attestations, are kept; Tollgate's previous layer is replaced).

A verdict whose content (everything but its time) is already published is not pushed again (until it is a day
old): Tollgate's own pushes notify the webhook, which re-evaluates (rescans) the image, and that must end here.
Tollgate's previous referrer manifests are deleted once the new ones are listed (best effort).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.domain import Descriptor, Digest, MediaType, parse_digest, sha256_digest
from workers.errors import (
    IntegrityError,
    NotFound,
    RegistryError,
    RegistryProtocolError,
    SignatureError,
    UnsupportedMediaType,
)
from workers.registry import RegistryClient
from workers.signatures.keyed import DSSE_MEDIA_TYPE, SIGNATURE_ANNOTATION, parse_dsse
from workers.signatures.keys import PublicKey

log = logging.getLogger(__name__)

VERDICT_ARTIFACT_TYPE = "application/vnd.tollgate.verdict.v1+json"
PROVENANCE_ARTIFACT_TYPE = "application/vnd.tollgate.provenance.v1+json"
TOLLGATE_ARTIFACT_TYPES = frozenset({VERDICT_ARTIFACT_TYPE, PROVENANCE_ARTIFACT_TYPE})
KIND_ANNOTATION = "dev.tollgate.attestation"  # "verdict" or "provenance": marks Tollgate's own layers and entries
FINGERPRINT_ANNOTATION = "dev.tollgate.fingerprint"
KEY_ANNOTATION = "dev.tollgate.keyid"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
COSIGN_PREDICATE_ANNOTATION = "predicateType"  # cosign's annotation on .att layers
CREATED_ANNOTATION = "org.opencontainers.image.created"
EMPTY_CONFIG = b"{}"
# An unchanged verdict is published again once it is this old, so that its timeVerified stays fresh for consumers
# that want a recent one; more often would let Tollgate's own pushes (which re-evaluate the image) loop.
REPUBLISH_AFTER = timedelta(hours=24)
MAX_KEPT_ENTRIES = 256
MAX_ENVELOPE_BYTES = (
    16 * 1024 * 1024
)  # a fallback index longer than this is cut (oldest first) rather than grown forever


def is_tollgate_artifact(artifact_type: object) -> bool:
    """True for the artifactType of Tollgate's own verdict and provenance referrers."""
    return artifact_type in TOLLGATE_ARTIFACT_TYPES


def artifact_type_of(raw: bytes) -> str | None:
    """The ``artifactType`` of manifest bytes (else its config's mediaType), or None when not JSON."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    value = document.get("artifactType")
    if value is None and isinstance(document.get("config"), dict):
        value = document["config"].get("mediaType")
    return value if isinstance(value, str) else None


def is_tollgate_layer(annotations: Mapping[str, Any]) -> bool:
    """True for Tollgate's verdict layer in a legacy ``.att`` manifest (which cosign's layers never carry)."""
    return annotations.get(KIND_ANNOTATION) == "verdict"


@dataclass(frozen=True)
class Attestation:
    """One signed statement to publish: its DSSE envelope and what the manifests say about it."""

    kind: str  # "verdict" or "provenance"
    artifact_type: str
    predicate_type: str
    envelope: bytes
    fingerprint: str


@dataclass(frozen=True)
class Published:
    """What publishing did: ``published``, or ``unchanged`` (already there); the digests and tags written."""

    status: str
    fingerprint: str
    referrers: Mapping[str, Digest] = field(default_factory=dict)  # kind → referrer manifest digest
    attestation_tag: str | None = None
    fallback_tag: str | None = None
    removed: tuple[Digest, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """For the record's ``provenance.publication`` and job results."""
        return {
            "status": self.status,
            "fingerprint": self.fingerprint,
            "referrers": dict(self.referrers),
            "attestation_tag": self.attestation_tag,
            "fallback_tag": self.fallback_tag,
            "removed": list(self.removed),
            "notes": list(self.notes),
        }


def subject_tags(subject: Digest) -> tuple[str, str]:
    """The fallback index tag ``sha256-<hex>`` and cosign's legacy attestation tag ``sha256-<hex>.att``."""
    if not subject.startswith("sha256:"):
        raise UnsupportedMediaType(f"only sha256 subjects have referrer tags, not {subject[:20]}")
    base = "sha256-" + subject.removeprefix("sha256:")
    return base, base + ".att"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _read_json(client: RegistryClient, repository: str, reference: str) -> tuple[Digest, dict[str, Any]] | None:
    """The manifest at ``reference`` as JSON, or None when missing or not a usable JSON object."""
    try:
        fetched = client.get_manifest(repository, reference)
    except NotFound:
        return None
    except (IntegrityError, RegistryProtocolError, UnsupportedMediaType) as exc:
        log.info("%s:%s is unusable (%s); it is replaced", repository, reference, exc)
        return None
    try:
        document = json.loads(fetched.raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return (fetched.digest, document) if isinstance(document, dict) else None


def _ensure_blob(client: RegistryClient, repository: str, data: bytes) -> Descriptor:
    digest = sha256_digest(data)
    if not client.blob_exists(repository, digest):
        client.upload_blob(repository, data)
    return Descriptor(media_type="", digest=digest, size=len(data))


class Publisher:
    """Writes Tollgate's attestations for one image through one registry client."""

    def __init__(self, client: RegistryClient, repository: str, subject: Digest, *, key: PublicKey) -> None:
        self.client = client
        self.repository = repository
        self.subject = subject
        self.key = key
        self.key_id = key.key_id
        self.fallback_tag, self.attestation_tag = subject_tags(subject)

    # ------------------------------------------------------------------------------------------ reading

    def _referrer_entries(self) -> tuple[bool, list[Any]]:
        """(registry has the referrers API, the referrer descriptors listed for the subject)."""
        try:
            listed = self.client.referrers(self.repository, self.subject)
        except (IntegrityError, RegistryProtocolError):
            listed = None
        if listed is not None:
            return True, listed
        loaded = _read_json(self.client, self.repository, self.fallback_tag)
        if loaded is None or loaded[1].get("mediaType") != MediaType.OCI_INDEX:
            return False, []
        manifests = loaded[1].get("manifests")
        return False, manifests if isinstance(manifests, list) else []

    def published(self) -> tuple[str | None, datetime | None, dict[str, Digest]]:
        """The fingerprint and time of the verdict already published in both places, and Tollgate's referrers
        (kind → digest) listed now; fingerprint and time are None when the verdict is missing from either place
        or the two differ."""
        _, entries = self._referrer_entries()
        ours = [e for e in entries if isinstance(e, dict) and is_tollgate_artifact(e.get("artifactType"))]
        referrers = {
            str(_annotations(e).get(KIND_ANNOTATION)): digest for e in ours if (digest := _entry_digest(e)) is not None
        }
        listed = [_annotations(e) for e in ours if e.get("artifactType") == VERDICT_ARTIFACT_TYPE]
        loaded = _read_json(self.client, self.repository, self.attestation_tag)
        layers = loaded[1].get("layers") if loaded is not None else None
        in_att = {
            _annotations(layer).get(FINGERPRINT_ANNOTATION)
            for layer in (layers if isinstance(layers, list) else [])
            if isinstance(layer, dict) and is_tollgate_layer(_annotations(layer))
        }
        if len(listed) != 1 or {listed[0].get(FINGERPRINT_ANNOTATION)} != in_att:
            return None, None, referrers
        try:
            created = datetime.fromisoformat(listed[0].get(CREATED_ANNOTATION, "").replace("Z", "+00:00"))
        except ValueError:
            created = None
        return listed[0].get(FINGERPRINT_ANNOTATION), created, referrers

    # ------------------------------------------------------------------------------------------ writing

    def _referrer(self, attestation: Attestation, subject: Descriptor) -> tuple[Digest, dict[str, Any]]:
        """Push the referrer manifest of ``attestation``; its digest and its descriptor for an index."""
        empty = _ensure_blob(self.client, self.repository, EMPTY_CONFIG)
        layer = _ensure_blob(self.client, self.repository, attestation.envelope)
        annotations = {
            CREATED_ANNOTATION: _now(),
            KIND_ANNOTATION: attestation.kind,
            FINGERPRINT_ANNOTATION: attestation.fingerprint,
            KEY_ANNOTATION: self.key_id,
            PREDICATE_ANNOTATION: attestation.predicate_type,
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "artifactType": attestation.artifact_type,
            "config": {"mediaType": MediaType.OCI_EMPTY.value, "digest": empty.digest, "size": empty.size},
            "layers": [
                {
                    "mediaType": DSSE_MEDIA_TYPE,
                    "digest": layer.digest,
                    "size": layer.size,
                    "annotations": {PREDICATE_ANNOTATION: attestation.predicate_type},
                }
            ],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": annotations,
        }
        raw = _canonical(manifest)
        digest = sha256_digest(raw)
        self.client.put_manifest(self.repository, digest, raw, MediaType.OCI_MANIFEST)
        entry = {
            "mediaType": MediaType.OCI_MANIFEST.value,
            "digest": digest,
            "size": len(raw),
            "artifactType": attestation.artifact_type,
            "annotations": annotations,
        }
        return digest, entry

    def _update_fallback(self, new: Sequence[dict[str, Any]], kinds: set[str]) -> list[Digest]:
        """Rewrite ``sha256-<hex>``: others' entries kept, Tollgate's of ``kinds`` replaced; their old digests."""
        loaded = _read_json(self.client, self.repository, self.fallback_tag)
        entries: list[Any] = []
        if loaded is not None and loaded[1].get("mediaType") == MediaType.OCI_INDEX:
            listed = loaded[1].get("manifests")
            entries = listed if isinstance(listed, list) else []
        kept: list[Any] = []
        removed: list[Digest] = []
        types = {e["artifactType"] for e in new}
        for entry in entries:
            if (
                isinstance(entry, dict)
                and entry.get("artifactType") in types
                and _annotations(entry).get(KIND_ANNOTATION) in kinds | {None}
            ):
                digest = _entry_digest(entry)
                if digest is not None:
                    removed.append(digest)
                continue
            kept.append(entry)
        kept = kept[-(MAX_KEPT_ENTRIES - len(new)) :] + list(new)
        index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX.value, "manifests": kept}
        self.client.put_manifest(self.repository, self.fallback_tag, _canonical(index), MediaType.OCI_INDEX)
        return removed

    def _update_attestation_tag(self, verdict: Attestation) -> None:
        """Rewrite ``sha256-<hex>.att`` with Tollgate's verdict layer replaced and every other layer kept."""
        layer = _ensure_blob(self.client, self.repository, verdict.envelope)
        loaded = _read_json(self.client, self.repository, self.attestation_tag)
        layers: list[Any] = []
        if loaded is not None and isinstance(loaded[1].get("layers"), list):
            layers = [
                entry
                for entry in loaded[1]["layers"]
                if isinstance(entry, dict) and not is_tollgate_layer(_annotations(entry))
            ]
        layers.append(
            {
                "mediaType": DSSE_MEDIA_TYPE,
                "digest": layer.digest,
                "size": layer.size,
                "annotations": {
                    SIGNATURE_ANNOTATION: "",  # cosign's attestation layers carry an empty one
                    COSIGN_PREDICATE_ANNOTATION: verdict.predicate_type,
                    KIND_ANNOTATION: verdict.kind,
                    FINGERPRINT_ANNOTATION: verdict.fingerprint,
                    KEY_ANNOTATION: self.key_id,
                },
            }
        )
        # Like cosign's: an image config whose diff_ids are the (uncompressed) layer digests.
        diff_ids = [entry.get("digest") for entry in layers]
        config = _canonical(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        )
        config_blob = _ensure_blob(self.client, self.repository, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "config": {"mediaType": MediaType.OCI_CONFIG.value, "digest": config_blob.digest, "size": len(config)},
            "layers": layers,
        }
        self.client.put_manifest(self.repository, self.attestation_tag, _canonical(manifest), MediaType.OCI_MANIFEST)

    def publish(self, attestations: Sequence[Attestation], *, force: bool) -> Published:
        """Push ``attestations`` (a verdict, optionally provenance); ``force`` publishes even an unchanged verdict."""
        verdict = next(a for a in attestations if a.kind == "verdict")
        if not force:
            fingerprint, created, current = self.published()
            fresh = created is not None and datetime.now(UTC) - created < REPUBLISH_AFTER
            if fingerprint == verdict.fingerprint and fresh:
                has_api, _ = self._referrer_entries()
                return Published(
                    "unchanged",
                    verdict.fingerprint,
                    referrers=current,
                    attestation_tag=self.attestation_tag,
                    fallback_tag=None if has_api else self.fallback_tag,
                )
        subject = self.client.head_manifest(self.repository, self.subject)
        if subject is None:
            raise NotFound(f"{self.repository}@{self.subject} is no longer in the registry")
        referrers: dict[str, Digest] = {}
        entries: list[dict[str, Any]] = []
        for attestation in attestations:
            digest, entry = self._referrer(attestation, subject)
            referrers[attestation.kind] = digest
            entries.append(entry)
        has_api, _ = self._referrer_entries()
        removed: list[Digest] = []
        if not has_api:
            removed = self._update_fallback(entries, {a.kind for a in attestations})
        self._update_attestation_tag(verdict)
        notes = self._delete_old([d for d in removed if d not in referrers.values()])
        return Published(
            "published",
            verdict.fingerprint,
            referrers=referrers,
            attestation_tag=self.attestation_tag,
            fallback_tag=None if has_api else self.fallback_tag,
            removed=tuple(removed),
            notes=tuple(notes),
        )

    def _delete_old(self, digests: Sequence[Digest]) -> list[str]:
        """Delete Tollgate's replaced referrer manifests; a refusal is a note, not a failure.

        Anyone who can push can list any digest in the fallback index with Tollgate's artifactType, so a
        manifest is deleted only when it is provably Tollgate's: a referrer of this image whose envelope
        verifies with Tollgate's key. Anything else listed that way is only dropped from the index.
        """
        notes = []
        for digest in digests:
            if not self._is_ours(digest):
                notes.append(f"{digest} was listed as Tollgate's but is not signed by its key: not deleted")
                continue
            try:
                self.client.delete_manifest(self.repository, digest)
            except NotFound:
                continue
            except RegistryError as exc:
                notes.append(f"old referrer {digest} not deleted: {exc}")
        return notes

    def _is_ours(self, digest: Digest) -> bool:
        loaded = _read_json(self.client, self.repository, digest)
        if loaded is None:
            return False
        manifest = loaded[1]
        subject = manifest.get("subject")
        layers = manifest.get("layers")
        if not is_tollgate_artifact(manifest.get("artifactType")) or not isinstance(subject, dict):
            return False
        if subject.get("digest") != self.subject or not isinstance(layers, list) or len(layers) != 1:
            return False
        layer_digest = _entry_digest(layers[0]) if isinstance(layers[0], dict) else None
        if layer_digest is None:
            return False
        try:
            envelope = parse_dsse(self.client.get_blob(self.repository, layer_digest, max_bytes=MAX_ENVELOPE_BYTES))
        except (NotFound, IntegrityError, RegistryProtocolError, SignatureError):
            return False
        message = envelope.message
        return any(isinstance(sig, bytes) and self.key.verify(sig, message) for sig in envelope.signatures)


def _annotations(entry: Any) -> Mapping[str, str]:
    value = entry.get("annotations") if isinstance(entry, dict) else None
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _entry_digest(entry: Mapping[str, Any]) -> Digest | None:
    value = entry.get("digest")
    try:
        return parse_digest(value) if isinstance(value, str) else None
    except ValueError:
        return None
