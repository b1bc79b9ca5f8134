"""A person's or a machine's rescan of one known image: queued on the rescan queue, recorded, audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from workers import audit
from workers.audit import AuditAction
from workers.domain import Actor, Digest
from workers.errors import UnknownImage
from workers.queue import enqueue_scan
from workers.settings import Settings
from workers.store import Store


@dataclass(frozen=True)
class RescanTicket:
    """What a rescan request did: the job that will scan, and whether this request created it."""

    repository: str
    digest: Digest
    job_id: str
    created: bool
    audit_id: int

    def to_json(self) -> dict[str, Any]:
        """The API answer (202)."""
        return {
            "repository": self.repository,
            "digest": self.digest,
            "job_id": self.job_id,
            "queued": self.created,  # False: a live job for the same image and ruleset was already waiting
            "audit_id": self.audit_id,
        }


def request_rescan(
    settings: Settings,
    store: Store,
    conn: redis.Redis,
    repository: str,
    digest: Digest,
    *,
    ruleset: str,
    actor: Actor,
    reason: str,
) -> RescanTicket:
    """Queue a fresh scan of a known image under ``ruleset``; UnknownImage when Tollgate never saw it.

    The job is made durable first and the record says ``queued`` next (as at intake), then the request is
    audited; a failure at any step raises a transient error, and repeating the request is harmless because
    the job id is derived from (repository, digest, ruleset).
    """
    if store.get_record(repository, digest) is None:
        raise UnknownImage(f"Tollgate has no record of {repository}@{digest}")
    enqueued = enqueue_scan(conn, repository, digest, ruleset=ruleset, settings=settings, rescan=True)
    store.mark_queued(repository, digest, ruleset=ruleset, job_id=enqueued.job_id, rescan=True)
    event = audit.record(
        store,
        actor,
        AuditAction.RESCAN,
        f"{repository}@{digest}",
        reason=reason,
        details={"job_id": enqueued.job_id, "ruleset": ruleset, "queued": enqueued.created},
    )
    return RescanTicket(repository, digest, enqueued.job_id, enqueued.created, event.id)
