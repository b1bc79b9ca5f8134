"""Read what provenance needs from an image source (manifests, configs, BuildKit attestation blobs) for extract."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from workers.domain import Digest, parse_digest
from workers.errors import PermanentError, TransientError
from workers.oci import MAX_CONFIG_BYTES, ImageIndex, ImageManifest, parse_config, parse_manifest
from workers.provenance.extract import PlatformFacts, ProvenanceResult, StatementInput, build_record
from workers.signatures.model import SignatureCheck
from workers.sources import ImageSource

log = logging.getLogger(__name__)

IN_TOTO_LAYER = "application/vnd.in-toto+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
MAX_ATTESTATION_BYTES = 32 * 1024 * 1024  # BuildKit caps attestation files at 40 MiB; provenance is far smaller
MAX_ATTESTATION_LAYERS = 16
PROVENANCE_PREFIX = "https://slsa.dev/provenance/"


def collect_provenance(
    source: ImageSource,
    subject: Digest,
    top: ImageManifest | ImageIndex,
    platform_digests: Sequence[tuple[str, Digest]],
    checks: Sequence[SignatureCheck] = (),
) -> ProvenanceResult:
    """The provenance record of ``subject`` (whose parsed top manifest is ``top``) and its findings.

    ``platform_digests`` are the (platform, manifest digest) pairs the pipeline scanned; their manifests and
    configs are read again (small, digest-verified). Only TransientError escapes (the job retries); anything
    permanent about provenance content is a recorded problem (so is a bug here: provenance never fails a scan).
    """
    try:
        return _collect(source, subject, top, platform_digests, checks)
    except TransientError:
        raise
    except Exception as exc:
        log.exception("provenance of %s could not be read", subject)
        problem = f"provenance could not be read ({type(exc).__name__}): {exc}"
        return build_record(subject, top.media_type, [], problems=[problem])


def _collect(
    source: ImageSource,
    subject: Digest,
    top: ImageManifest | ImageIndex,
    platform_digests: Sequence[tuple[str, Digest]],
    checks: Sequence[SignatureCheck],
) -> ProvenanceResult:
    problems: list[str] = []
    platforms: list[PlatformFacts] = []
    for platform, digest in platform_digests:
        try:
            fetched = source.get_manifest(digest)
            manifest = parse_manifest(fetched.media_type, fetched.raw)
            if not isinstance(manifest, ImageManifest):
                continue
            config = parse_config(source.get_blob(manifest.config.digest, max_bytes=MAX_CONFIG_BYTES))
        except PermanentError as exc:
            problems.append(f"{platform} ({digest}): {exc}")
            continue
        platforms.append(PlatformFacts(platform, digest, manifest, config))
    statements: list[StatementInput] = []
    if isinstance(top, ImageIndex):
        statements += _buildkit_statements(source, top, problems)
    for check in checks:
        if check.verified and check.statement is not None and _is_provenance(check.predicate_type):
            statements.append(
                StatementInput(
                    origin="signed-attestation",
                    where=check.source,
                    statement=check.statement,
                    digest=_source_digest(check.source),
                    signer=check.identity,
                )
            )
    index_annotations = top.annotations if isinstance(top, ImageIndex) else {}
    media_type = top.media_type
    return build_record(
        subject, media_type, platforms, index_annotations=index_annotations, statements=statements, problems=problems
    )


def _is_provenance(predicate_type: str | None) -> bool:
    return isinstance(predicate_type, str) and predicate_type.startswith(PROVENANCE_PREFIX)


def _source_digest(source: str) -> Digest | None:
    """The manifest digest a signature check's ``source`` names (``tag@sha256:…#0`` or a bare digest)."""
    candidate = source.split("@", 1)[-1].split("#", 1)[0]
    try:
        return parse_digest(candidate)
    except ValueError:
        return None


def _buildkit_statements(source: ImageSource, index: ImageIndex, problems: list[str]) -> list[StatementInput]:
    """The in-toto provenance layers of the index's BuildKit attestation manifests (both layouts, PROTOCOLS §7)."""
    out: list[StatementInput] = []
    for descriptor in index.attestations():
        where = f"attestation manifest {descriptor.digest}"
        reference = descriptor.annotations.get("vnd.docker.reference.digest")
        try:
            attached = parse_digest(reference) if reference else None
        except ValueError:
            problems.append(f"{where}: vnd.docker.reference.digest is not a digest")
            attached = None
        try:
            fetched = source.get_manifest(descriptor.digest)
            manifest = parse_manifest(fetched.media_type, fetched.raw)
        except PermanentError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not isinstance(manifest, ImageManifest):
            problems.append(f"{where}: not an image manifest")
            continue
        if attached is None and manifest.subject is not None:  # v0.32+ artifacts also carry subject
            attached = manifest.subject.digest
        layers = [layer for layer in manifest.layers if layer.media_type == IN_TOTO_LAYER]
        if len(layers) > MAX_ATTESTATION_LAYERS:
            problems.append(f"{where}: {len(layers)} in-toto layers; only {MAX_ATTESTATION_LAYERS} are read")
        for layer in layers[:MAX_ATTESTATION_LAYERS]:
            announced = layer.annotations.get(PREDICATE_ANNOTATION)
            if announced is not None and not _is_provenance(announced):
                continue  # SBOMs and other predicates are not provenance (the statement's own type decides below)
            if layer.size > MAX_ATTESTATION_BYTES:
                problems.append(f"{where}: layer {layer.digest} is {layer.size} bytes, over {MAX_ATTESTATION_BYTES}")
                continue
            try:
                payload = source.get_blob(layer.digest, max_bytes=MAX_ATTESTATION_BYTES)
            except PermanentError as exc:
                problems.append(f"{where}: layer {layer.digest}: {exc}")
                continue
            out.append(
                StatementInput(
                    origin="buildkit-attestation",
                    where=descriptor.digest,
                    payload=payload,
                    digest=layer.digest,
                    platform_manifest=attached,
                )
            )
    return out
