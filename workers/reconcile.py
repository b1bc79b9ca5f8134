"""The reconciler: walk the registry's repositories and tags and queue every image the webhook never delivered."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import redis

from workers.domain import Descriptor, is_repository_name, is_tag
from workers.errors import QueueUnavailable, StoreUnavailable, TollgateError
from workers.quarantine.jobs import resume_moves
from workers.quarantine.state import placeholder_digests
from workers.queue import Admission, admit_push, redis_connection
from workers.settings import Settings
from workers.signatures.discovery import subject_of_tag

if TYPE_CHECKING:
    from workers.store import Store

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 100  # a registry with thousands of broken repositories must not make the report huge


class RegistryLister(Protocol):
    """The part of the registry client the reconciler needs (``workers.registry.RegistryClient`` has it)."""

    def catalog(self) -> Iterator[str]:
        """Every repository name, following pagination."""
        ...

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``."""
        ...

    def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The descriptor ``reference`` resolves to, or None when it does not exist."""
        ...


@dataclass(frozen=True)
class ReconcileReport:
    """What one reconciliation pass saw and did."""

    repositories: int
    tags: int
    enqueued: int
    errors: tuple[str, ...]
    moves_resumed: int = 0  # quarantine/release moves left unfinished (a killed worker …) and queued again

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (for the CLI and the job result)."""
        return {
            "repositories": self.repositories,
            "tags": self.tags,
            "enqueued": self.enqueued,
            "errors": list(self.errors),
            "moves_resumed": self.moves_resumed,
        }


def reconcile(
    settings: Settings,
    *,
    client: RegistryLister,
    store: Store,
    redis_conn: redis.Redis,
    ruleset: str,
) -> ReconcileReport:
    """List every repository and tag, resolve each tag, and admit it like a push notification would.

    Notifications are lost when the registry restarts or while Tollgate is down; this pass makes sure every
    tagged image is recorded and vetted under ``ruleset``. Repositories under the quarantine prefix are
    Tollgate's own and are skipped. A failing repository is reported and the walk goes on; Redis or the
    database being down stops the walk (every further step would fail the same way) and is reported too.
    """
    repositories = tags_seen = enqueued = 0
    errors: list[str] = []
    resumed: list[str] = []
    try:
        # Moves first: an image left half-quarantined by a killed worker matters more than a missed push.
        resumed = resume_moves(settings, store, redis_conn)
    except (StoreUnavailable, QueueUnavailable) as exc:
        _note(errors, f"resuming quarantine moves: {exc}")
    try:
        for repository in client.catalog():
            if settings.quarantine_repo and repository.startswith(settings.quarantine_repo):
                continue
            repositories += 1
            try:
                found, queued = _reconcile_repository(
                    settings, client, store, redis_conn, ruleset=ruleset, repository=repository
                )
            except (StoreUnavailable, QueueUnavailable):
                raise
            except (TollgateError, ValueError) as exc:
                _note(errors, f"{repository[:200]}: {_describe(exc)}")
                continue
            tags_seen += found
            enqueued += queued
    except (StoreUnavailable, QueueUnavailable) as exc:
        _note(errors, f"stopped: {exc}")
    except TollgateError as exc:  # the catalog itself failed (registry down, auth refused, …)
        _note(errors, f"catalog: {_describe(exc)}")
    report = ReconcileReport(
        repositories=repositories,
        tags=tags_seen,
        enqueued=enqueued,
        errors=tuple(errors),
        moves_resumed=len(resumed),
    )
    log.info("reconcile: %s", report.to_json())
    return report


def _reconcile_repository(
    settings: Settings,
    client: RegistryLister,
    store: Store,
    redis_conn: redis.Redis,
    *,
    ruleset: str,
    repository: str,
) -> tuple[int, int]:
    """Admit every tag of one repository; (tags seen, scans queued)."""
    if not is_repository_name(repository):
        raise ValueError("not a valid repository name")
    tags_seen = queued = 0
    placeholders: frozenset[str] | None = None
    for tag in _valid_tags(client.list_tags(repository)):
        descriptor = client.head_manifest(repository, tag)
        if descriptor is None:
            continue  # deleted or re-tagged since the listing
        if placeholders is None:
            placeholders = placeholder_digests(store, repository)
        if descriptor.digest in placeholders:
            continue  # a quarantined tag, re-pointed by Tollgate: the hold owns it, it is no image to vet
        tags_seen += 1
        admitted = admit_push(
            redis_conn,
            store,
            repository,
            descriptor.digest,
            tag=tag,
            media_type=descriptor.media_type,
            ruleset=ruleset,
            settings=settings,
        )
        if admitted.outcome is Admission.QUEUED:
            queued += 1
    return tags_seen, queued


def _valid_tags(tags: Iterable[str]) -> Iterator[str]:
    for tag in tags:
        if not is_tag(tag):
            log.warning("reconcile: skipping a tag that is not valid: %r", str(tag)[:80])
        elif subject_of_tag(tag) is not None:
            # sha256-<hex>.sig/.att/sha256-<hex> hold an image's signatures, not an image: that image's own scan
            # reads them (and an unsigned image is checked again when its grace period ends).
            continue
        else:
            yield tag


def _note(errors: list[str], message: str) -> None:
    if len(errors) < MAX_REPORTED_ERRORS:
        errors.append(message)
    elif len(errors) == MAX_REPORTED_ERRORS:
        errors.append("… more errors not shown")


def _describe(exc: Exception) -> str:
    text = exc.diagnostics() if isinstance(exc, TollgateError) else str(exc)
    return f"{type(exc).__name__}: {text}"[:500]


def reconcile_job() -> dict[str, Any]:
    """rq entry point of the periodic reconciler: build everything from the environment and run one pass."""
    from rules.loader import ruleset_version
    from workers.registry import RegistryClient
    from workers.store import Store

    settings = Settings.from_env()
    store = Store.from_settings(settings)
    conn = redis_connection(settings)
    try:
        with RegistryClient.from_settings(settings) as client:
            report = reconcile(
                settings,
                client=client,
                store=store,
                redis_conn=conn,
                ruleset=ruleset_version(settings.rules_dir, settings.rules_extra),
            )
        sweep = decision_sweep(settings, store, conn)
    finally:
        store.close()
        conn.close()
    return {**report.to_json(), **sweep}


def decision_sweep(settings: Settings, store: Store, conn: redis.Redis) -> dict[str, Any]:
    """The safety net of time- and change-driven re-decisions, run on every pass.

    Waivers that expired are audited once and their images decided again, even when the job scheduled at
    the expiry was lost; waivers created or revoked since the last pass have their re-decisions queued (in
    case Redis was down when the API tried); a policy version whose re-decisions were never queued (an
    edited policy file, a caller that did not queue them) gets them. A failure is reported, never raised:
    the registry pass already happened and the next pass tries again.
    """
    from workers.policy_versions import schedule_policy_redecisions
    from workers.waivers import expire_due_waivers, redecide_changed_waivers

    out: dict[str, Any] = {"waivers_expired": [], "waivers_changed": 0, "policy_redecisions": 0, "sweep_errors": []}
    try:
        out["waivers_expired"] = [w.id for w in expire_due_waivers(settings, store, conn)]
    except (TollgateError, redis.RedisError) as exc:
        out["sweep_errors"].append(f"waiver expiry: {_describe(exc)}")
    try:
        out["waivers_changed"] = redecide_changed_waivers(settings, store, conn)
    except (TollgateError, redis.RedisError) as exc:
        out["sweep_errors"].append(f"waiver changes: {_describe(exc)}")
    try:
        out["policy_redecisions"] = schedule_policy_redecisions(settings, store, conn)
    except (TollgateError, redis.RedisError) as exc:
        out["sweep_errors"].append(f"policy re-decisions: {_describe(exc)}")
    return out
