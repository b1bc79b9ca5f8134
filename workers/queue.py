"""The job queue: rq queues, job ids, enqueueing scans, admitting pushes, and the worker; the only rq importer."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry, SimpleWorker, Worker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from workers.domain import Digest, ScanStatus, is_repository_name, parse_digest
from workers.errors import QueueUnavailable
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.store import Store

log = logging.getLogger(__name__)

# Workers listen in this order, so pushes are scanned ahead of rescans.
PUSH_QUEUE = "tollgate-push"
RESCAN_QUEUE = "tollgate-rescan"
QUEUES = (PUSH_QUEUE, RESCAN_QUEUE)
# Outbound webhooks: tiny, time-critical jobs on their own queue, so a rescan backlog never delays an alert.
NOTIFY_QUEUE = "tollgate-notify"
WORKER_QUEUES = (PUSH_QUEUE, NOTIFY_QUEUE, RESCAN_QUEUE)
# What the queue page counts and lists failures of: scans and notifications (a receiver that stays down).
MONITORED_QUEUES = (PUSH_QUEUE, RESCAN_QUEUE, NOTIFY_QUEUE)

# Job functions are named, never imported, so the web process stays free of yara and the pipeline.
SCAN_FUNCTION = "workers.jobs.scan_image"
# Re-verifies signatures and decides again from the stored findings (no rescan): the end of a grace period.
REVERIFY_FUNCTION = "workers.jobs.reverify_image"
SCAN_FAILED_CALLBACK = "workers.jobs.on_scan_failed"
RECONCILE_FUNCTION = "workers.reconcile.reconcile_job"
SUBJECT_LOOKUP_FUNCTION = "workers.signature_jobs.reevaluate_subject"
RECONCILE_JOB_ID = "tollgate-reconcile"
# Registry moves (quarantine, release): one job per image at a time, on the push queue (ahead of rescans).
MOVE_FUNCTION = "workers.quarantine.jobs.move_image"
MOVE_FAILED_CALLBACK = "workers.quarantine.jobs.on_move_failed"
MOVE_TIMEOUT = 3600  # seconds: a move copies every layer when the registry refuses mounts
# Decides again from the stored findings with the current waivers and policy (workers/redecide.py).
REDECIDE_FUNCTION = "workers.redecide.redecide_image"
WAIVER_SWEEP_FUNCTION = "workers.waivers.expiry_sweep_job"
NOTIFY_FUNCTION = "workers.notify.deliver"
NOTIFY_TIMEOUT = 120  # one delivery is a few POSTs with bounded timeouts

RESULT_TTL = 24 * 3600  # finished scans stay visible on the queue page for a day
FAILURE_TTL = 7 * 24 * 3600
RETRY_INTERVALS = (10, 60, 300)
REDIS_CONNECT_TIMEOUT = 2.0  # the registry waits ~1 s for the webhook: fail fast, answer 503, let it retry
REDIS_SOCKET_TIMEOUT = 10.0

# Jobs carry only strings (repository, digest), so JSON is enough and safer than pickle across versions.
SERIALIZER = JSONSerializer

# A job in one of these states holds no pending work: a later legitimate enqueue may replace it.
_SPENT = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
# Re-evaluations and rechecks are keyed by what caused them (an artifact, a point in time): once one finished,
# that cause has been acted on and a redelivery must collapse into it; only a job that did not finish is redone.
_UNFINISHED = _SPENT - {JobStatus.FINISHED}


@dataclass(frozen=True)
class Enqueued:
    """The outcome of an enqueue: the deterministic job id, and whether this call created the job."""

    job_id: str
    created: bool


class Admission(StrEnum):
    """What happened to one pushed image at intake (the webhook or the reconciler)."""

    QUEUED = "queued"  # a new scan job is in Redis
    DUPLICATE = "duplicate"  # a live job for the same (repository, digest, ruleset) was already there
    ALREADY_VETTED = "already-vetted"  # done, or in hand, under the current ruleset
    REEVALUATION_QUEUED = "reevaluation-queued"  # a signature-like artifact arrived: its subject is rescanned


@dataclass(frozen=True)
class Admitted:
    """The admission of one image and the job id it maps to."""

    outcome: Admission
    job_id: str


def redis_connection(settings: Settings) -> redis.Redis:
    """A Redis client on ``settings.redis_url`` with short timeouts, so an outage surfaces as an error quickly."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
    )


def scan_job_id(repository: str, digest: str, ruleset: str) -> str:
    """The rq job id of scanning ``repository@digest`` under ``ruleset``: ``scan-`` and 64 hex digits.

    rq ids allow ``[A-Za-z0-9_-]`` only, and a readable mangling of repository names would collide
    (``a/b`` vs ``a.b``), so the triple is hashed; the job's description and meta keep the readable form.
    """
    key = "\n".join((repository, digest, ruleset)).encode()
    return "scan-" + hashlib.sha256(key).hexdigest()


def _hashed_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def reevaluation_job_id(repository: str, subject: str, ruleset: str, artifact: str) -> str:
    """The rq job id of re-evaluating ``repository@subject`` because ``artifact`` (a signature …) was pushed.

    The artifact digest is part of the key: a redelivered notification maps to the same job, while a second
    signature (a new ``.sig`` manifest, an updated referrers index) is a new digest and re-evaluates again.
    """
    return _hashed_id("reeval-", repository, subject, ruleset, artifact)


def recheck_job_id(repository: str, digest: str, at: datetime) -> str:
    """The rq job id of the rescan of ``repository@digest`` scheduled for ``at`` (see :func:`recheck_time`)."""
    return _hashed_id("recheck-", repository, digest, recheck_time(at).isoformat())


def subject_lookup_job_id(repository: str, artifact: str) -> str:
    """The rq job id of reading the ``subject`` of the manifest ``repository@artifact``."""
    return _hashed_id("subject-", repository, artifact)


def recheck_time(at: datetime) -> datetime:
    """``at`` in UTC, rounded up to the whole second; naive datetimes are refused (whose clock would it be?).

    Rounding up, not down: a recheck that ran before ``at`` would find the image still within its grace period
    and ask for a recheck at the same ``at``, which is then the running job itself and would be dropped.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the recheck time must be timezone-aware")
    moment = at.astimezone(UTC)
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _check_target(repository: str, *digests: str) -> None:
    """Refuse names that the store would refuse later, so that no job is queued for them."""
    if not is_repository_name(repository):
        raise ValueError(f"not a repository name: {repository[:80]!r}")
    for digest in digests:
        parse_digest(digest)


def _queue(conn: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=conn, serializer=SERIALIZER)


def _retry(settings: Settings) -> Retry | None:
    if settings.job_retries <= 0:
        return None
    return Retry(max=settings.job_retries, interval=list(RETRY_INTERVALS))


def _clear_spent_job(conn: redis.Redis, job_id: str, replace: frozenset[JobStatus] = _SPENT) -> bool:
    """Delete the job ``job_id`` if its status is in ``replace`` (no pending work); True when the id is free again.

    With ``unique=True`` rq refuses an id until its job is deleted, which includes the result/failure TTL
    window. Callers enqueue only when the store says a scan is needed, so a finished, failed, stopped or
    canceled job under the id is stale and must not block the new one; a queued, started, scheduled (waiting
    for a retry) or deferred job is live and is the duplicate.
    """
    try:
        job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        return True  # expired or deleted in between
    status = job.get_status(refresh=False)
    if status not in replace:
        return False
    log.info("replacing spent job %s (status %s)", job_id, status.value if status else None)
    job.delete()
    return True


def _enqueue_unique(
    queue: Queue,
    job_id: str,
    *,
    at: datetime | None = None,
    replace: frozenset[JobStatus] = _SPENT,
    **options: Any,
) -> bool:
    """Enqueue with ``unique=True`` (at ``at`` when given), replacing a job under the same id whose status is in
    ``replace``; True when this call created it."""
    scheduled: dict[str, Any] = {}
    if at is not None:
        # enqueue_at takes rq's keyword arguments, where the function is positional and the timeout is job_timeout.
        scheduled = {key: value for key, value in options.items() if key not in {"func", "timeout"}}
        scheduled["job_timeout"] = options.get("timeout")
    # Two rounds are enough: a spent job is deleted once; if another caller re-created it meanwhile, it is live.
    for _round in range(2):
        try:
            if at is None:
                queue.enqueue_call(job_id=job_id, unique=True, **options)
            else:
                queue.enqueue_at(at, options["func"], job_id=job_id, unique=True, **scheduled)
        except DuplicateJobError:
            if not _clear_spent_job(queue.connection, job_id, replace):
                return False
        else:
            return True
    return False


def enqueue_scan(
    conn: redis.Redis,
    repository: str,
    digest: str,
    *,
    ruleset: str,
    settings: Settings,
    rescan: bool = False,
) -> Enqueued:
    """Make sure a job scanning ``repository@digest`` under ``ruleset`` is in Redis; durable when this returns.

    Pushes go to :data:`PUSH_QUEUE`, rescans (``rescan=True``) to :data:`RESCAN_QUEUE`. A live job with the
    same id makes this a no-op (``created=False``). Raises :class:`QueueUnavailable` when Redis fails.
    """
    job_id = scan_job_id(repository, digest, ruleset)
    queue = _queue(conn, RESCAN_QUEUE if rescan else PUSH_QUEUE)
    meta = {"repository": repository, "digest": digest, "ruleset": ruleset, "rescan": rescan}
    try:
        created = _enqueue_unique(queue, job_id, **_scan_options(repository, digest, settings, meta))
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue the scan of {repository}@{digest}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def _scan_options(
    repository: str,
    digest: str,
    settings: Settings,
    meta: dict[str, Any],
    what: str = "scan",
    *,
    func: str = SCAN_FUNCTION,
) -> dict[str, Any]:
    """The rq options of a job running ``func`` (:data:`SCAN_FUNCTION` by default) on ``repository@digest``."""
    return {
        "func": func,
        "args": (repository, digest),
        "timeout": settings.job_timeout,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "retry": _retry(settings),
        "on_failure": Callback(SCAN_FAILED_CALLBACK),
        "description": f"{what} {repository}@{digest}",
        "meta": meta,
    }


def enqueue_reevaluation(
    conn: redis.Redis,
    repository: str,
    subject: str,
    *,
    artifact: str,
    ruleset: str,
    settings: Settings,
) -> Enqueued:
    """Queue a rescan of ``repository@subject`` because ``artifact`` (a signature, attestation, referrers index
    or referrer) naming it was pushed; on the rescan queue, durable when this returns.

    The store is neither asked nor touched: the image may well be done under ``ruleset`` already, which is
    exactly when a new signature must be looked at (the layer cache makes the rescan cheap; only signatures and
    the decision are redone), and the scan job itself records its progress. The job id
    (:func:`reevaluation_job_id`) differs from the push scan's, so a live push scan does not absorb it either.
    Raises :class:`ValueError` for names that are not valid and :class:`QueueUnavailable` when Redis fails.
    """
    _check_target(repository, subject, artifact)
    job_id = reevaluation_job_id(repository, subject, ruleset, artifact)
    meta = {
        "repository": repository,
        "digest": subject,
        "ruleset": ruleset,
        "rescan": True,
        "reason": "re-evaluation",
        "artifact": artifact,
    }
    options = _scan_options(repository, subject, settings, meta, what="re-evaluate")
    try:
        created = _enqueue_unique(_queue(conn, RESCAN_QUEUE), job_id, replace=_UNFINISHED, **options)
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue the re-evaluation of {repository}@{subject}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def schedule_recheck(
    conn: redis.Redis,
    repository: str,
    digest: str,
    at: datetime,
    *,
    settings: Settings,
) -> Enqueued:
    """Schedule a re-verification of ``repository@digest`` (:data:`REVERIFY_FUNCTION`: signatures found again,
    the stored findings decided again, no rescan) on the rescan queue at ``at`` (timezone-aware), e.g. the end of
    an unsigned image's grace period; idempotent per (repository, digest, ``at`` to the second).

    rq's scheduler (every worker runs with it, see :func:`run_worker`) moves the job to the queue once ``at`` has
    passed; an ``at`` in the past runs at the scheduler's next pass. A recheck that is still scheduled, queued or
    running, or that has finished, makes this a no-op (``created=False``); one that failed is scheduled again.
    Raises :class:`ValueError` for a naive ``at`` or invalid names, :class:`QueueUnavailable` when Redis fails.
    """
    _check_target(repository, digest)
    when = recheck_time(at)
    job_id = recheck_job_id(repository, digest, when)
    meta = {"repository": repository, "digest": digest, "rescan": True, "reason": "recheck", "at": when.isoformat()}
    options = _scan_options(
        repository, digest, settings, meta, what=f"recheck at {when.isoformat()}", func=REVERIFY_FUNCTION
    )
    try:
        created = _enqueue_unique(_queue(conn, RESCAN_QUEUE), job_id, at=when, replace=_UNFINISHED, **options)
    except RedisError as exc:
        raise QueueUnavailable(f"could not schedule the recheck of {repository}@{digest}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def redecision_job_id(repository: str, digest: str, cause: str) -> str:
    """The rq job id of deciding ``repository@digest`` again because of ``cause`` (``waiver-12-revoked``, …)."""
    return _hashed_id("redecide-", repository, digest, cause)


def enqueue_redecision(
    conn: redis.Redis,
    repository: str,
    digest: str,
    *,
    cause: str,
    settings: Settings,
    func: str = REDECIDE_FUNCTION,
) -> Enqueued:
    """Queue a re-decision of ``repository@digest`` (``func``: :data:`REDECIDE_FUNCTION`, or
    :data:`REVERIFY_FUNCTION` when signatures must be verified again) on the rescan queue; durable on return.

    Keyed by ``cause`` like re-evaluations: a repeated cause (a sweep seeing the same expiry twice) collapses
    into the job it already made, a new cause always runs, since a job already running may have read the
    waivers or the policy before the change. Raises :class:`QueueUnavailable` when Redis fails.
    """
    _check_target(repository, digest)
    job_id = redecision_job_id(repository, digest, cause)
    meta = {"repository": repository, "digest": digest, "rescan": True, "reason": "re-decision", "cause": cause}
    options = _scan_options(repository, digest, settings, meta, what=f"re-decide ({cause})", func=func)
    try:
        created = _enqueue_unique(_queue(conn, RESCAN_QUEUE), job_id, replace=_UNFINISHED, **options)
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue the re-decision of {repository}@{digest}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def waiver_expiry_job_id(waiver_id: int, at: datetime) -> str:
    """The rq job id of the expiry sweep scheduled for waiver ``waiver_id`` at ``at``."""
    return _hashed_id("waiver-expiry-", str(waiver_id), recheck_time(at).isoformat())


def schedule_waiver_expiry(conn: redis.Redis, waiver_id: int, at: datetime, *, settings: Settings) -> Enqueued:
    """Schedule :data:`WAIVER_SWEEP_FUNCTION` at ``at`` (a waiver's expiry, timezone-aware) on the rescan queue.

    The sweep audits every waiver that expired and re-decides the images they matched; the periodic
    reconciler runs it too, so an expiry is acted on even if Redis lost this job.
    """
    when = recheck_time(at)
    job_id = waiver_expiry_job_id(waiver_id, when)
    try:
        created = _enqueue_unique(
            _queue(conn, RESCAN_QUEUE),
            job_id,
            at=when,
            replace=_UNFINISHED,
            func=WAIVER_SWEEP_FUNCTION,
            timeout=settings.job_timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=_retry(settings),
            description=f"waiver {waiver_id} expires at {when.isoformat()}",
            meta={"waiver": waiver_id, "at": when.isoformat()},
        )
    except RedisError as exc:
        raise QueueUnavailable(f"could not schedule the expiry of waiver {waiver_id}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def enqueue_notification(
    conn: redis.Redis, target_id: str, event: str, body: dict[str, Any], *, settings: Settings
) -> str:
    """Queue one webhook delivery (:data:`NOTIFY_FUNCTION`) on :data:`NOTIFY_QUEUE`; its job id.

    Retries back off exponentially (``notify_backoff`` doubled, see ``workers.notify.retry_intervals``).
    Raises :class:`QueueUnavailable` when Redis fails.
    """
    from workers.notify import retry_intervals

    intervals = retry_intervals(settings)
    try:
        job = _queue(conn, NOTIFY_QUEUE).enqueue_call(
            func=NOTIFY_FUNCTION,
            args=(target_id, event, body),
            timeout=NOTIFY_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            description=f"notify {event} to {target_id}",
            meta={"event": event, "target": target_id, "image": body.get("image")},
        )
    except RedisError as exc:
        raise QueueUnavailable(f"could not queue the {event} notification: {exc}") from exc
    return str(job.id)


def enqueue_subject_lookup(conn: redis.Redis, repository: str, artifact: str, *, settings: Settings) -> Enqueued:
    """Queue :data:`SUBJECT_LOOKUP_FUNCTION`: read the manifest ``repository@artifact`` from the registry and,
    when it carries ``subject``, queue that image's re-evaluation (for artifacts pushed without a telling tag)."""
    _check_target(repository, artifact)
    job_id = subject_lookup_job_id(repository, artifact)
    try:
        created = _enqueue_unique(
            _queue(conn, RESCAN_QUEUE),
            job_id,
            replace=_UNFINISHED,
            func=SUBJECT_LOOKUP_FUNCTION,
            args=(repository, artifact),
            timeout=60,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=_retry(settings),
            description=f"find the subject of {repository}@{artifact}",
            meta={"repository": repository, "digest": artifact},
        )
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue the subject lookup of {repository}@{artifact}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def move_job_id(repository: str, digest: str) -> str:
    """The rq job id of moving ``repository@digest``: one per image, so two moves of it never run at once.

    A move requested while the image's job is live is picked up by that job (it runs the hold's current move);
    the move id is not part of the key for exactly that reason.
    """
    return _hashed_id("move-", repository, digest)


def enqueue_move(conn: redis.Redis, repository: str, digest: str, move_id: int, *, settings: Settings) -> Enqueued:
    """Queue :data:`MOVE_FUNCTION` for ``repository@digest`` on the push queue; durable when this returns.

    Retried with backoff on transient errors; :data:`MOVE_FAILED_CALLBACK` records a move whose retries ran out.
    A live job of the image makes this a no-op (``created=False``): it runs the hold's current move when it gets
    there. Raises :class:`ValueError` for invalid names and :class:`QueueUnavailable` when Redis fails.
    """
    _check_target(repository, digest)
    job_id = move_job_id(repository, digest)
    try:
        created = _enqueue_unique(
            _queue(conn, PUSH_QUEUE),
            job_id,
            func=MOVE_FUNCTION,
            args=(repository, digest, move_id),
            timeout=max(settings.job_timeout, MOVE_TIMEOUT),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            retry=_retry(settings),
            on_failure=Callback(MOVE_FAILED_CALLBACK),
            description=f"move {repository}@{digest} (move {move_id})",
            meta={"repository": repository, "digest": digest, "move_id": move_id},
        )
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue move {move_id} of {repository}@{digest}: {exc}") from exc
    return Enqueued(job_id=job_id, created=created)


def job_is_live(conn: redis.Redis, job_id: str) -> bool:
    """True when ``job_id`` exists in Redis and still holds pending work (not finished, failed or stopped)."""
    try:
        job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    except RedisError as exc:
        raise QueueUnavailable(f"could not read job {job_id}: {exc}") from exc
    return job.get_status(refresh=False) not in _SPENT


def admit_push(
    conn: redis.Redis,
    store: Store,
    repository: str,
    digest: Digest,
    *,
    tag: str | None,
    media_type: str | None,
    ruleset: str,
    settings: Settings,
) -> Admitted:
    """Record a pushed image and, unless it is already in hand under ``ruleset``, queue its scan.

    Order matters for at-least-once delivery: the push is recorded first (so the tag is known even when the
    digest is already vetted), the job is made durable in Redis next, and the record says ``queued`` last.
    Any failure raises (``StoreUnavailable``/``QueueUnavailable``) so the caller answers 503 and the registry
    redelivers; every step is idempotent, so a redelivery finishes the work without a second job.
    """
    job_id = scan_job_id(repository, digest, ruleset)
    record = store.record_push(repository, digest, tag=tag, media_type=media_type)
    if not store.needs_scan(repository, digest, ruleset):
        # A record stuck in 'queued' whose job vanished (Redis flushed or restored from an old snapshot)
        # would never be scanned: queue it again rather than trust the record.
        stale = record.status == ScanStatus.QUEUED and not job_is_live(conn, record.job_id or job_id)
        if not stale:
            live = record.status in {ScanStatus.QUEUED, ScanStatus.SCANNING}
            return Admitted(Admission.DUPLICATE if live else Admission.ALREADY_VETTED, job_id)
    enqueued = enqueue_scan(conn, repository, digest, ruleset=ruleset, settings=settings)
    store.mark_queued(repository, digest, ruleset=ruleset, job_id=enqueued.job_id)
    return Admitted(Admission.QUEUED if enqueued.created else Admission.DUPLICATE, enqueued.job_id)


def enqueue_reconcile(conn: redis.Redis, settings: Settings) -> Enqueued:
    """Queue one reconciler run on the rescan queue, unless one is already waiting or running."""
    try:
        created = _enqueue_unique(
            _queue(conn, RESCAN_QUEUE),
            RECONCILE_JOB_ID,
            func=RECONCILE_FUNCTION,
            timeout=max(settings.job_timeout, 3600),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description="reconcile the registry with the store",
        )
    except RedisError as exc:
        raise QueueUnavailable(f"could not enqueue the reconciler: {exc}") from exc
    return Enqueued(job_id=RECONCILE_JOB_ID, created=created)


def queue_depths(conn: redis.Redis) -> dict[str, int]:
    """Waiting jobs per queue name, plus ``started``, ``scheduled`` (retry back-off) and ``failed`` over all three."""
    try:
        queues = [_queue(conn, name) for name in MONITORED_QUEUES]
        depths = {queue.name: queue.count for queue in queues}
        depths["started"] = sum(q.started_job_registry.count for q in queues)
        depths["scheduled"] = sum(q.scheduled_job_registry.count for q in queues)
        depths["failed"] = sum(q.failed_job_registry.count for q in queues)
    except RedisError as exc:
        raise QueueUnavailable(f"could not read the queues: {exc}") from exc
    return depths


def failed_jobs(conn: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent failed jobs over the scan and notification queues, newest first, as JSON-ready dicts."""
    if limit <= 0:
        return []
    found: list[dict[str, Any]] = []
    try:
        for name in MONITORED_QUEUES:
            queue = _queue(conn, name)
            ids = queue.failed_job_registry.get_job_ids(0, limit - 1, desc=True)
            for job in Job.fetch_many(ids, connection=conn, serializer=SERIALIZER):
                if job is not None:
                    found.append(_failed_summary(name, job))
    except RedisError as exc:
        raise QueueUnavailable(f"could not read the failed jobs: {exc}") from exc
    found.sort(key=lambda item: item["ended_at"] or "", reverse=True)
    return found[:limit]


def _failed_summary(queue_name: str, job: Job) -> dict[str, Any]:
    result = job.latest_result()
    exc_info = (result.exc_string if result is not None else None) or ""
    lines = [line for line in exc_info.strip().splitlines() if line.strip()]
    return {
        "id": job.id,
        "queue": queue_name,
        "description": job.description,
        "repository": job.meta.get("repository"),
        "digest": job.meta.get("digest"),
        "ruleset": job.meta.get("ruleset"),
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "error": lines[-1][:500] if lines else None,
    }


# -- the worker --------------------------------------------------------------------------------------------------


class ReconcileTicker:
    """Enqueues the reconciler every ``interval`` seconds, at most once per interval across all workers.

    Every worker runs a ticker; a Redis key set with ``NX`` and a TTL of one interval elects whoever gets
    there first, so N workers still produce one run per interval, and a crashed worker never holds it long.
    The reconciler itself runs as an ordinary rq job (timeouts, failure registry, one at a time by job id).
    """

    def __init__(self, settings: Settings, conn: redis.Redis, *, name: str) -> None:
        self.settings = settings
        self.conn = conn
        self.name = name
        self.interval = settings.reconcile_interval
        self.lock_key = f"{settings.queue_prefix}:reconcile:due"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tollgate-reconcile-ticker", daemon=True)

    def tick(self) -> bool:
        """Enqueue the reconciler if this process wins the current interval; True when it did."""
        if not self.conn.set(self.lock_key, self.name, nx=True, ex=self.interval):
            return False
        enqueued = enqueue_reconcile(self.conn, self.settings)
        log.info("reconciler %s", "queued" if enqueued.created else "already queued or running")
        return True

    def _run(self) -> None:
        period = max(1, min(self.interval, 30))
        while not self._stop.is_set():
            try:
                self.tick()
            except (RedisError, QueueUnavailable) as exc:
                log.warning("reconcile ticker: %s", exc)
            self._stop.wait(period)

    def start(self) -> ReconcileTicker:
        """Start ticking in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def run_worker(settings: Settings, *, burst: bool = False, with_scheduler: bool = True, simple: bool = False) -> None:
    """Run an rq worker over the push, notification and rescan queues until stopped (or, with ``burst``, until empty).

    ``with_scheduler`` lets this worker move delayed retries back to their queue (at least one worker per
    deployment needs it). ``simple`` runs jobs in-process without forking (tests). A long-running worker
    also ticks the periodic reconciler when ``settings.reconcile_interval`` > 0.
    """
    conn = redis_connection(settings)
    queues = [_queue(conn, name) for name in WORKER_QUEUES]
    worker_class = SimpleWorker if simple else Worker
    worker = worker_class(queues, connection=conn, serializer=SERIALIZER)
    ticker: ReconcileTicker | None = None
    if settings.reconcile_interval > 0 and not burst:
        ticker = ReconcileTicker(settings, redis_connection(settings), name=worker.name).start()
    try:
        worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
    except RedisError as exc:
        raise QueueUnavailable(f"the worker lost Redis: {exc}") from exc
    finally:
        if ticker is not None:
            ticker.stop()
