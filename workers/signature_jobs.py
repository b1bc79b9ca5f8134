"""rq entry point that re-evaluates an image when a manifest naming it as ``subject`` (a referrer) is pushed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from workers.domain import Digest, parse_digest
from workers.errors import IntegrityError, NotFound, RegistryProtocolError, UnsupportedMediaType
from workers.provenance.publish import artifact_type_of, is_tollgate_artifact
from workers.queue import enqueue_reevaluation, redis_connection
from workers.registry import FetchedManifest, RegistryClient
from workers.settings import Settings
from workers.signatures.discovery import subject_of_manifest
from workers.signatures.model import printable

log = logging.getLogger(__name__)


class ManifestReader(Protocol):
    """The part of the registry client a subject lookup needs (``workers.registry.RegistryClient`` has it)."""

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """The manifest at ``reference``, digest-verified and size-capped."""
        ...


@dataclass(frozen=True)
class SubjectLookup:
    """The image a pushed manifest names as its ``subject``, or why there is none to re-evaluate."""

    subject: Digest | None
    reason: str = ""


def lookup_subject(client: ManifestReader, repository: str, artifact: Digest) -> SubjectLookup:
    """Read ``repository@artifact`` by digest (never a URL from the notification) and return its ``subject``.

    Missing, unreadable, oversized or subject-less manifests are a reason, not an error: there is nothing to
    re-evaluate. Transient registry failures propagate so that rq retries the job.
    """
    try:
        fetched = client.get_manifest(repository, artifact)
    except NotFound:
        return SubjectLookup(None, "the manifest is no longer in the registry")
    except (IntegrityError, RegistryProtocolError, UnsupportedMediaType) as exc:
        return SubjectLookup(None, f"the manifest is unreadable: {printable(str(exc), 200)}")
    subject = subject_of_manifest(fetched.raw)
    if subject is None:
        return SubjectLookup(None, "the manifest has no subject")
    if is_tollgate_artifact(artifact_type_of(fetched.raw)):
        # Tollgate's own verdict or provenance, pushed after a decision: re-evaluating would publish again.
        return SubjectLookup(None, "the manifest is Tollgate's own attestation")
    if subject == artifact:
        # Only possible for a forged digest, which the client refuses; kept so no job can ever requeue itself.
        return SubjectLookup(None, "the manifest names itself as its subject")
    return SubjectLookup(subject)


def reevaluate_subject(repository: str, artifact_digest: str) -> dict[str, Any]:
    """rq entry point: when the manifest ``repository@artifact_digest`` carries ``subject``, queue that image's
    re-evaluation (:func:`workers.queue.enqueue_reevaluation`); otherwise log and return the reason."""
    from rules.loader import ruleset_version  # at run time, as in the reconciler

    settings = Settings.from_env()
    try:
        artifact = parse_digest(artifact_digest)
    except ValueError:
        return _skipped(repository, artifact_digest, "not a digest")
    with RegistryClient.from_settings(settings) as client:
        found = lookup_subject(client, repository, artifact)
    if found.subject is None:
        return _skipped(repository, artifact, found.reason)
    conn = redis_connection(settings)
    try:
        enqueued = enqueue_reevaluation(
            conn,
            repository,
            found.subject,
            artifact=artifact,
            ruleset=ruleset_version(settings.rules_dir, settings.rules_extra),
            settings=settings,
        )
    finally:
        conn.close()
    log.info("%s@%s names %s: re-evaluation %s", repository, artifact, found.subject, enqueued.job_id)
    return {"status": "queued", "subject": found.subject, "job_id": enqueued.job_id, "created": enqueued.created}


def _skipped(repository: str, artifact: str, reason: str) -> dict[str, Any]:
    log.info("%s@%s: no subject to re-evaluate: %s", repository, printable(artifact, 80), reason)
    return {"status": "skipped", "reason": reason}
