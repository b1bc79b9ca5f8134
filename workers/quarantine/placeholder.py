"""The placeholder image a quarantined tag is re-pointed to: one small layer and a config that say why."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from workers.domain import Digest, MediaType, sha256_digest
from workers.registry import digest_of

LABEL_PREFIX = "io.tollgate.quarantine"
QUARANTINED_LABEL = f"{LABEL_PREFIX}.quarantined"  # "true" on every placeholder: how a placeholder is recognised
ORIGINAL_LABEL = f"{LABEL_PREFIX}.original-digest"
REPOSITORY_LABEL = f"{LABEL_PREFIX}.repository"
REASON_LABEL = f"{LABEL_PREFIX}.reason"
DETAILS_LABEL = f"{LABEL_PREFIX}.details"
NOTICE_PATH = "TOLLGATE-QUARANTINE.txt"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MAX_REASON = 500
# Fixed times: the placeholder of one hold is byte-identical on every run, so a resumed move pushes the same digest.
FIXED_MTIME = 0
CREATED = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Placeholder:
    """The blobs and manifest of a placeholder image; ``digest`` is the manifest's."""

    config: bytes
    layer: bytes
    manifest: bytes
    digest: Digest
    media_type: str = MediaType.OCI_MANIFEST

    @property
    def blobs(self) -> tuple[tuple[Digest, bytes], ...]:
        """(digest, bytes) of the config and the layer, which must be in the repository before the manifest."""
        return ((digest_of(self.config), self.config), (digest_of(self.layer), self.layer))


def details_url(public_url: str, repository: str, digest: str) -> str:
    """Where a person reads why the image is held: the image's status page."""
    return f"{public_url.rstrip('/')}/images/{repository}@{digest}"


def _clip(text: str) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    return cleaned if len(cleaned) <= MAX_REASON else cleaned[: MAX_REASON - 1] + "…"


def _canonical(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def build_placeholder(*, public_url: str, repository: str, digest: str, reason: str) -> Placeholder:
    """The placeholder for ``repository@digest``: deterministic for the same inputs (resumable pushes)."""
    url = details_url(public_url, repository, digest)
    why = _clip(reason) or "held by Tollgate"
    notice = (
        "This tag is quarantined by Tollgate.\n\n"
        f"Image:    {repository}@{digest}\n"
        f"Why:      {why}\n"
        f"Details:  {url}\n\n"
        "The original image is preserved unchanged; the security team can release it, which restores this tag\n"
        "to the exact original digest.\n"
    ).encode()
    raw_tar = io.BytesIO()
    with tarfile.open(fileobj=raw_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(NOTICE_PATH)
        info.size = len(notice)
        info.mtime = FIXED_MTIME
        info.mode = 0o444
        tar.addfile(info, io.BytesIO(notice))
    uncompressed = raw_tar.getvalue()
    layer = gzip.compress(uncompressed, compresslevel=9, mtime=0)
    labels = {
        QUARANTINED_LABEL: "true",
        ORIGINAL_LABEL: digest,
        REPOSITORY_LABEL: repository,
        REASON_LABEL: why,
        DETAILS_LABEL: url,
    }
    config = _canonical(
        {
            "created": CREATED,
            "architecture": "amd64",
            "os": "linux",
            # Nothing to run: starting the placeholder fails at once instead of doing anything.
            "config": {"Labels": labels, "Cmd": ["/TOLLGATE-QUARANTINED"], "Env": [f"TOLLGATE_QUARANTINED={digest}"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(uncompressed)]},
            "history": [{"created": CREATED, "created_by": f"tollgate quarantine of {repository}@{digest}"}],
        }
    )
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "config": {"mediaType": MediaType.OCI_CONFIG.value, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": digest_of(layer), "size": len(layer)}],
            "annotations": {
                "org.opencontainers.image.description": f"Quarantined by Tollgate: {why}",
                "org.opencontainers.image.url": url,
                ORIGINAL_LABEL: digest,
            },
        }
    )
    return Placeholder(config=config, layer=layer, manifest=manifest, digest=digest_of(manifest))
