"""rq entry points: thin, idempotent wrappers that load settings, run the pipeline and persist the outcome."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from workers import audit
from workers.domain import (
    SYSTEM_ACTOR,
    Action,
    Digest,
    Finding,
    ScanStatus,
    SignatureState,
    SignatureStatus,
    Verdict,
    parse_digest,
)
from workers.errors import ConfigError, PermanentError, TransientError
from workers.layerscan import StoredLayerCache
from workers.notify import notify
from workers.pipeline import NotAnImage, Vetter, decide_with_signatures, load_scanners
from workers.policy import Decision
from workers.policy_versions import effective_policy
from workers.provenance.attest import publish_decision
from workers.quarantine.jobs import enforce_decision
from workers.quarantine.source import scan_source
from workers.queue import enqueue_subject_lookup, redis_connection, schedule_recheck
from workers.registry import RegistryClient
from workers.settings import Settings
from workers.signatures.model import SignatureCheck
from workers.signatures.verify import SignatureVerifier, verify_image
from workers.store import ImageRecord, Store
from workers.waivers import active_waivers, apply_waivers

log = logging.getLogger(__name__)


def _settings() -> Settings:
    # Read on every job: cheap, and a worker never acts on settings older than its environment.
    return Settings.from_env()


@cache
def _store_for(database_url: str) -> Store:
    return Store(database_url)


def _store() -> Store:
    """One Store (connection pool) per database URL for the life of the worker process."""
    return _store_for(_settings().database_url)


def _progress_reporter(repository: str, digest: Digest) -> Any:
    """Publish the current stage on the rq job's meta so pages can show live progress."""
    try:
        from rq import get_current_job
    except ImportError:  # pragma: no cover - rq is a hard dependency of workers
        return lambda _stage: None
    job = get_current_job()

    def report(stage: str) -> None:
        if job is None:
            return
        job.meta["stage"] = stage
        job.meta["subject"] = f"{repository}@{digest}"
        try:
            job.save_meta()  # type: ignore[no-untyped-call]
        except Exception:
            log.debug("could not save job progress", exc_info=True)

    return report


def scan_image(repository: str, digest: str) -> dict[str, Any]:
    """Vet ``repository@digest`` from the configured registry and store the record.

    Transient errors propagate so rq retries with backoff; permanent errors (and unexpected ones: an
    error is never a pass) are recorded on the image and end the job without a retry.
    """
    settings = _settings()
    store = _store()
    checked = parse_digest(digest)
    scanners = load_scanners(
        settings.rules_dir,
        settings.rules_extra,
        protected_names=settings.protected_names,
        trusted_namespaces=settings.trusted_namespaces,
    )
    store.mark_scanning(repository, checked, ruleset=scanners.ruleset)
    record = store.get_record(repository, checked)
    # The grace period for signatures runs from the push (first seen), not from when a worker got to it.
    pushed_at = record.first_seen if record is not None else None
    try:
        # The version in force, cached by id; an edited policy file becomes a new version at the next job.
        policy = effective_policy(store, settings)
    except ConfigError as exc:
        # The image is held as an error (never judged under a stale or default policy) until rescanned.
        return _record_error(settings, store, repository, checked, exc.diagnostics(), ruleset=scanners.ruleset)
    decided_at = store.now()
    waivers_in_force = active_waivers(store, decided_at)
    vetter = Vetter(
        scanners,
        limits=settings.limits,
        policy=policy,
        progress=_progress_reporter(repository, checked),
        # Layers another image already brought are not scanned again under the same ruleset.
        layer_cache=StoredLayerCache(store),
        signature_verifier=verify_image,
        # Waivers apply at decision time: waived findings stay on the record, marked, and do not count.
        waive=lambda found, repo, image: apply_waivers(found, waivers_in_force, repo, image, decided_at),
    )
    try:
        with RegistryClient.from_settings(settings) as client:
            # A held image whose digest was deleted is read from its preserved copy (same bytes, verified).
            report = vetter.vet(scan_source(store, client, repository, checked), checked, pushed_at=pushed_at)
    except TransientError:
        raise
    except NotAnImage as exc:
        store.mark_not_image(repository, checked, str(exc), ruleset=scanners.ruleset)
        # A signature, attestation or other referrer pushed by digest: its subject's signatures are re-evaluated.
        enqueue_subject_lookup(redis_connection(settings), repository, checked, settings=settings)
        return {"status": "done", "verdict": None, "reason": str(exc)}
    except PermanentError as exc:
        return _record_error(settings, store, repository, checked, exc.diagnostics(), ruleset=scanners.ruleset)
    except Exception as exc:
        log.exception("unexpected error vetting %s@%s", repository, digest)
        message = f"internal error ({type(exc).__name__}): {exc}"
        return _record_error(settings, store, repository, checked, message, ruleset=scanners.ruleset)
    store.save_report(report)
    if vetter.cache_hits:
        log.info("%s@%s: %d layer scan(s) came from the cache", repository, digest, vetter.cache_hits)
    return finish_decision(
        settings,
        store,
        repository,
        checked,
        verdict=report.verdict,
        action=report.action,
        status=report.signature_status,
        explanation=report.explanation,
        previous=record,
    )


def reverify_image(
    repository: str,
    digest: str,
    *,
    now: datetime | None = None,
    verifier: SignatureVerifier = verify_image,
) -> dict[str, Any]:
    """Re-verify the signatures of a vetted ``repository@digest`` and update its action; no rescan.

    For a ``.sig``/``.att``/``sha256-<hex>``/referrer push after the image, when the grace period ends,
    and for a policy change. The stored findings are decided again with the signatures found now, the
    waivers in force and the policy version in force; the grace period runs from the image's first push.
    Result ``status``: ``done`` (with ``action`` and ``signatures``, whose
    ``state`` is ``grace`` and ``grace_until`` set while the image is still waiting), ``skipped`` (no
    completed scan yet: that scan verifies signatures itself) or ``error`` (a broken policy file: nothing
    changes). Registry outages raise TransientError so rq retries.
    """
    settings = _settings()
    store = _store()
    checked = parse_digest(digest)
    record = store.get_record(repository, checked)
    if record is None or record.status is not ScanStatus.DONE or record.verdict is None:
        return {"status": "skipped", "reason": "no completed scan of this image"}
    try:
        policy = effective_policy(store, settings)
    except ConfigError as exc:
        return {"status": "error", "error": exc.diagnostics()}
    moment = now or store.now()
    found = apply_waivers(record.findings, active_waivers(store, moment), repository, checked, moment)
    with RegistryClient.from_settings(settings) as client:
        decision, checks = decide_with_signatures(
            found,
            repository,
            checked,
            policy,
            client=client,
            verifier=verifier,
            pushed_at=record.first_seen,
            now=moment,
        )
    # The verdict can change too: the waivers or the policy in force may differ from the last decision's.
    return store_redecision(settings, store, record, decision, found, signatures=checks)


def store_redecision(
    settings: Settings,
    store: Store,
    record: ImageRecord,
    decision: Decision,
    findings: Sequence[Finding],
    *,
    signatures: Sequence[SignatureCheck] | None = None,
) -> dict[str, Any]:
    """Store a decision taken again over ``record``'s findings and end like every decided job.

    ``skipped`` when the image was rescanned in between (that scan's own decision stands); ``signatures``
    None keeps the stored checks.
    """
    if not store.update_decision(
        record.repository,
        record.digest,
        verdict=decision.verdict,
        action=decision.action,
        explanation=decision.explanation,
        findings=findings,
        scanned_at=record.scanned_at,
        signatures=signatures,
    ):
        return {"status": "skipped", "reason": "the image is being rescanned"}
    return finish_decision(
        settings,
        store,
        record.repository,
        record.digest,
        verdict=decision.verdict,
        action=decision.action,
        status=decision.signatures,
        explanation=decision.explanation,
        previous=record,
    )


def finish_decision(
    settings: Settings,
    store: Store,
    repository: str,
    digest: Digest,
    *,
    verdict: Verdict,
    action: Action,
    status: SignatureStatus | None,
    explanation: str,
    previous: ImageRecord | None,
) -> dict[str, Any]:
    """The ending of every job that decided (scan, re-verification, re-decision); the decision is already stored.

    A changed verdict or action is appended to the audit trail. An image still within its grace period is
    looked at again at its end: a signature that arrives before then re-evaluates the image on its own push;
    the recheck is for one that never comes. The result's ``signatures.state``/``grace_until`` say which.
    """
    before = (previous.verdict, previous.action) if previous is not None else (None, None)
    if before != (verdict, action):
        audit.record(
            store,
            SYSTEM_ACTOR,
            audit.AuditAction.VERDICT,
            f"{repository}@{digest}",
            reason=explanation,
            details={
                "verdict": verdict.value,
                "action": action.value,
                "previous_verdict": before[0].value if before[0] else None,
                "previous_action": before[1].value if before[1] else None,
            },
        )
    # Act in the registry: quarantine, or release an automatic hold the decision no longer supports.
    enforce_decision(settings, store, repository, digest, action)
    # Publish provenance and the signed verdict next to the image when it changed; a registry that refuses
    # is recorded on the image, never a failed job.
    publication = publish_decision(settings, store, repository, digest)
    if status is not None and status.state is SignatureState.GRACE and status.grace_until is not None:
        schedule_recheck(redis_connection(settings), repository, digest, status.grace_until, settings=settings)
    return {
        "status": "done",
        "verdict": verdict.value,
        "action": action.value,
        "signatures": status.to_json() if status is not None else None,
        "publication": publication,
    }


def _record_error(
    settings: Settings, store: Store, repository: str, digest: Digest, message: str, *, ruleset: str | None
) -> dict[str, Any]:
    """Record that vetting failed (never a pass) and tell the configured webhooks (``scan.error``)."""
    store.mark_error(repository, digest, message, ruleset=ruleset)
    notify(settings, "scan.error", {"repository": repository, "digest": digest, "reason": message})
    return {"status": "error", "error": message}


def on_scan_failed(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """rq failure callback: once retries are exhausted, record the error so the image never looks passed."""
    if getattr(job, "retries_left", 0):
        return  # rq will try again; the image stays 'scanning'
    try:
        repository, digest = job.args[0], parse_digest(job.args[1])
    except (IndexError, ValueError, TypeError):
        log.exception("failed job %s has unexpected arguments %r", getattr(job, "id", "?"), getattr(job, "args", None))
        return
    detail = "".join(traceback.format_exception_only(exc_type, exc_value)).strip() if exc_type else "job failed"
    message = f"gave up after retries: {detail}"
    _store().mark_error(repository, digest, message, ruleset=None)
    try:
        settings = _settings()
    except ConfigError:
        log.warning("scan.error for %s@%s not notified: the settings do not load", repository, digest)
        return
    notify(settings, "scan.error", {"repository": repository, "digest": digest, "reason": message})
