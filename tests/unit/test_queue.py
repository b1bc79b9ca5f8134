"""The queue module against a real Redis: job ids, unique enqueueing, spent jobs, admission, the worker."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from tests.support.storage import digest_of, make_report
from workers.domain import ScanStatus
from workers.errors import PermanentError, QueueUnavailable
from workers.queue import (
    PUSH_QUEUE,
    RECONCILE_JOB_ID,
    RESCAN_QUEUE,
    REVERIFY_FUNCTION,
    SCAN_FAILED_CALLBACK,
    SCAN_FUNCTION,
    Admission,
    ReconcileTicker,
    admit_push,
    enqueue_reconcile,
    enqueue_reevaluation,
    enqueue_scan,
    enqueue_subject_lookup,
    failed_jobs,
    queue_depths,
    recheck_job_id,
    recheck_time,
    reevaluation_job_id,
    run_worker,
    scan_job_id,
    schedule_recheck,
    subject_lookup_job_id,
)
from workers.settings import Settings
from workers.store import Store

REPO = "team/app"
DIGEST = digest_of("manifest")
RULESET = "rules-1"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_url,
        database_url=f"sqlite:///{tmp_path / 'queue.db'}",
        job_retries=0,
        reconcile_interval=0,
    )


def _fetch(conn: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=conn, serializer=JSONSerializer)


def _waiting(conn: redis.Redis, name: str) -> list[str]:
    return Queue(name, connection=conn, serializer=JSONSerializer).get_job_ids()


# -- job ids -----------------------------------------------------------------------------------------------------


def test_job_id_is_rq_safe_deterministic_and_distinct() -> None:
    job_id = scan_job_id(REPO, DIGEST, RULESET)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", job_id)
    assert job_id == scan_job_id(REPO, DIGEST, RULESET)
    variants = {
        job_id,
        scan_job_id("team/app2", DIGEST, RULESET),
        scan_job_id(REPO, digest_of("other"), RULESET),
        scan_job_id(REPO, DIGEST, "rules-2"),
        # Names that a readable mangling (/ . _ → -) would collapse into one id:
        scan_job_id("a/b", DIGEST, RULESET),
        scan_job_id("a.b", DIGEST, RULESET),
        scan_job_id("a_b", DIGEST, RULESET),
    }
    assert len(variants) == 7


# -- enqueue -----------------------------------------------------------------------------------------------------


def test_enqueue_scan_stores_a_complete_job(redis_conn: redis.Redis, redis_url: str, tmp_path: Any) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, job_timeout=123, job_retries=3)
    enqueued = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    assert enqueued.created
    assert enqueued.job_id == scan_job_id(REPO, DIGEST, RULESET)
    job = _fetch(redis_conn, enqueued.job_id)
    assert job.func_name == SCAN_FUNCTION
    assert job.args == [REPO, DIGEST]
    assert job.origin == PUSH_QUEUE
    assert job.timeout == 123
    assert job.retries_left == 3
    assert job.retry_intervals == [10, 60, 300]
    assert job.result_ttl == 24 * 3600
    assert job.failure_ttl == 7 * 24 * 3600
    assert job._failure_callback_name == SCAN_FAILED_CALLBACK
    assert job.meta["ruleset"] == RULESET
    assert _waiting(redis_conn, PUSH_QUEUE) == [enqueued.job_id]


def test_enqueue_twice_is_one_job(redis_conn: redis.Redis, settings: Settings) -> None:
    first = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    second = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    assert first.created and not second.created
    assert first.job_id == second.job_id
    assert _waiting(redis_conn, PUSH_QUEUE) == [first.job_id]


def test_rescan_goes_to_the_rescan_queue_unless_a_push_job_is_live(redis_conn: redis.Redis, settings: Settings) -> None:
    rescan = enqueue_scan(redis_conn, REPO, DIGEST, ruleset="rules-2", settings=settings, rescan=True)
    assert rescan.created
    assert _waiting(redis_conn, RESCAN_QUEUE) == [rescan.job_id]
    pushed = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    again = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings, rescan=True)
    assert not again.created
    assert _waiting(redis_conn, PUSH_QUEUE) == [pushed.job_id]
    assert _waiting(redis_conn, RESCAN_QUEUE) == [rescan.job_id]


def test_redis_down_is_queue_unavailable(settings: Settings, free_port: int) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port, socket_connect_timeout=1)
    with pytest.raises(QueueUnavailable):
        enqueue_scan(dead, REPO, DIGEST, ruleset=RULESET, settings=settings)
    with pytest.raises(QueueUnavailable):
        queue_depths(dead)


# -- spent jobs and the real worker ------------------------------------------------------------------------------


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in ``workers.jobs`` module: rq imports job functions by name, so the worker runs these.

    The real job module drives the whole pipeline; these tests are about the queue, so the job body is a
    fixture function (as in rq's own test suite), while Redis, rq and the worker are real.
    """
    module = types.ModuleType("workers.jobs")
    monkeypatch.setitem(sys.modules, "workers.jobs", module)
    return module


@pytest.fixture
def job_calls(monkeypatch: pytest.MonkeyPatch, jobs: types.ModuleType) -> Iterator[list[tuple[str, Any]]]:
    """Swap the job body and the failure callback (rq imports them by name) for recorders; the job fails."""
    calls: list[tuple[str, Any]] = []

    def failing_scan(repository: str, digest: str) -> None:
        calls.append(("scan", (repository, digest)))
        raise PermanentError("the manifest is malformed")

    def on_failed(job: Job, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
        calls.append(("failed", (job.id, exc_type, job.retries_left)))

    monkeypatch.setattr(jobs, "scan_image", failing_scan, raising=False)
    monkeypatch.setattr(jobs, "on_scan_failed", on_failed, raising=False)
    yield calls


def test_a_failed_job_does_not_block_a_later_enqueue(
    redis_conn: redis.Redis, settings: Settings, job_calls: list[tuple[str, Any]]
) -> None:
    first = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    run_worker(settings, burst=True, with_scheduler=False, simple=True)
    job_id = first.job_id
    assert _fetch(redis_conn, job_id).get_status() == JobStatus.FAILED
    assert job_calls == [("scan", (REPO, DIGEST)), ("failed", (job_id, PermanentError, None))]
    assert [f["id"] for f in failed_jobs(redis_conn)] == [job_id]
    assert failed_jobs(redis_conn)[0]["error"].startswith("workers.errors.PermanentError")
    assert queue_depths(redis_conn)["failed"] == 1

    again = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    assert again.created
    assert _fetch(redis_conn, job_id).get_status() == JobStatus.QUEUED
    assert _waiting(redis_conn, PUSH_QUEUE) == [job_id]
    assert failed_jobs(redis_conn) == []


def test_a_finished_job_is_replaced_when_asked_again(
    redis_conn: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, jobs: types.ModuleType
) -> None:
    monkeypatch.setattr(jobs, "scan_image", lambda repository, digest: {"status": "error"}, raising=False)
    first = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    run_worker(settings, burst=True, with_scheduler=False, simple=True)
    assert _fetch(redis_conn, first.job_id).get_status() == JobStatus.FINISHED
    # Callers only enqueue when the store says a scan is needed (e.g. the image ended in 'error'),
    # so a finished job under the id is stale: it must not swallow the new request for a day.
    again = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    assert again.created
    assert _waiting(redis_conn, PUSH_QUEUE) == [first.job_id]


def test_a_job_waiting_for_its_retry_is_live(
    redis_conn: redis.Redis, redis_url: str, job_calls: list[tuple[str, Any]], tmp_path: Any
) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, job_retries=2, reconcile_interval=0)
    first = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    run_worker(settings, burst=True, with_scheduler=False, simple=True)
    assert _fetch(redis_conn, first.job_id).get_status() == JobStatus.SCHEDULED
    # rq runs the failure callback on every failure, before it spends a retry: retries_left is still 2 here
    # and reaches 0 only on the last failure, which is when workers.jobs.on_scan_failed records the error.
    assert job_calls == [("scan", (REPO, DIGEST)), ("failed", (first.job_id, PermanentError, 2))]
    assert queue_depths(redis_conn)["scheduled"] == 1
    again = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    assert not again.created


# -- admission (store + queue) -----------------------------------------------------------------------------------


def test_admit_push_queues_once_and_records(redis_conn: redis.Redis, settings: Settings, store: Store) -> None:
    first = admit_push(
        redis_conn, store, REPO, DIGEST, tag="1.0", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    assert first.outcome is Admission.QUEUED
    record = store.get_record(REPO, DIGEST)
    assert record is not None
    assert record.status == ScanStatus.QUEUED
    assert record.job_id == first.job_id
    assert record.ruleset == RULESET

    second = admit_push(
        redis_conn, store, REPO, DIGEST, tag="latest", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    assert second.outcome is Admission.DUPLICATE
    assert set(store.tags_of(REPO, DIGEST)) == {"1.0", "latest"}
    assert _waiting(redis_conn, PUSH_QUEUE) == [first.job_id]


def test_admit_push_of_a_vetted_image_records_the_tag_only(
    redis_conn: redis.Redis, settings: Settings, store: Store
) -> None:
    store.record_push(REPO, DIGEST, tag="1.0", media_type=MANIFEST)
    store.save_report(make_report(REPO, DIGEST, ruleset=RULESET))
    admitted = admit_push(
        redis_conn, store, REPO, DIGEST, tag="prod", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    assert admitted.outcome is Admission.ALREADY_VETTED
    assert "prod" in store.tags_of(REPO, DIGEST)
    assert _waiting(redis_conn, PUSH_QUEUE) == []
    # A new ruleset makes the same image worth scanning again.
    rescan = admit_push(
        redis_conn, store, REPO, DIGEST, tag=None, media_type=MANIFEST, ruleset="rules-2", settings=settings
    )
    assert rescan.outcome is Admission.QUEUED


def test_admit_push_requeues_a_record_whose_job_vanished(
    redis_conn: redis.Redis, settings: Settings, store: Store
) -> None:
    first = admit_push(
        redis_conn, store, REPO, DIGEST, tag="1", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    redis_conn.flushdb()  # Redis lost its data (restart without persistence); the record still says queued
    again = admit_push(
        redis_conn, store, REPO, DIGEST, tag="1", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    assert again.outcome is Admission.QUEUED
    assert _waiting(redis_conn, PUSH_QUEUE) == [first.job_id]


# -- the periodic reconciler -------------------------------------------------------------------------------------


def test_reconcile_ticker_elects_one_worker_per_interval(redis_conn: redis.Redis, redis_url: str) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, reconcile_interval=300)
    one = ReconcileTicker(settings, redis_conn, name="worker-1")
    two = ReconcileTicker(settings, redis_conn, name="worker-2")
    assert one.tick()
    assert not two.tick()
    assert not one.tick()
    assert _waiting(redis_conn, RESCAN_QUEUE) == [RECONCILE_JOB_ID]
    assert 0 < redis_conn.ttl(one.lock_key) <= 300
    # Next interval (the key expired): whoever ticks first enqueues; a waiting run is not doubled.
    redis_conn.delete(one.lock_key)
    assert two.tick()
    assert _waiting(redis_conn, RESCAN_QUEUE) == [RECONCILE_JOB_ID]
    assert not enqueue_reconcile(redis_conn, settings).created


# -- re-evaluations and rechecks ---------------------------------------------------------------------------------

ARTIFACT = digest_of("signature manifest")


def _scheduled(conn: redis.Redis) -> list[tuple[str, datetime]]:
    registry = Queue(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer).scheduled_job_registry
    return [(job_id, registry.get_scheduled_time(job_id)) for job_id in registry.get_job_ids()]


def test_reevaluation_ids_are_rq_safe_and_keyed_by_the_artifact() -> None:
    job_id = reevaluation_job_id(REPO, DIGEST, RULESET, ARTIFACT)
    assert re.fullmatch(r"reeval-[0-9a-f]{64}", job_id)
    variants = {
        job_id,
        scan_job_id(REPO, DIGEST, RULESET),
        reevaluation_job_id(REPO, DIGEST, RULESET, digest_of("second signature")),
        reevaluation_job_id(REPO, DIGEST, "rules-2", ARTIFACT),
        reevaluation_job_id("team/other", DIGEST, RULESET, ARTIFACT),
        reevaluation_job_id(REPO, digest_of("other image"), RULESET, ARTIFACT),
    }
    assert len(variants) == 6


def test_a_reevaluation_is_a_rescan_of_the_subject(redis_conn: redis.Redis, settings: Settings) -> None:
    enqueued = enqueue_reevaluation(redis_conn, REPO, DIGEST, artifact=ARTIFACT, ruleset=RULESET, settings=settings)
    assert enqueued.created
    assert enqueued.job_id == reevaluation_job_id(REPO, DIGEST, RULESET, ARTIFACT)
    job = _fetch(redis_conn, enqueued.job_id)
    assert job.func_name == SCAN_FUNCTION
    assert job.args == [REPO, DIGEST]
    assert job.origin == RESCAN_QUEUE
    assert job._failure_callback_name == SCAN_FAILED_CALLBACK
    assert job.meta == {
        "repository": REPO,
        "digest": DIGEST,
        "ruleset": RULESET,
        "rescan": True,
        "reason": "re-evaluation",
        "artifact": ARTIFACT,
    }
    assert _waiting(redis_conn, RESCAN_QUEUE) == [enqueued.job_id]
    assert not enqueue_reevaluation(
        redis_conn, REPO, DIGEST, artifact=ARTIFACT, ruleset=RULESET, settings=settings
    ).created
    assert _waiting(redis_conn, RESCAN_QUEUE) == [enqueued.job_id]


def test_a_reevaluation_is_not_absorbed_by_the_scan_dedupe(
    redis_conn: redis.Redis, settings: Settings, store: Store
) -> None:
    # Vetted under this ruleset: admit_push queues nothing, yet a new signature must be looked at.
    store.record_push(REPO, DIGEST, tag="1.0", media_type=MANIFEST)
    store.save_report(make_report(REPO, DIGEST, ruleset=RULESET))
    admitted = admit_push(
        redis_conn, store, REPO, DIGEST, tag="1.0", media_type=MANIFEST, ruleset=RULESET, settings=settings
    )
    assert admitted.outcome is Admission.ALREADY_VETTED
    # And with a live push scan under the same (repository, digest, ruleset), it is still a job of its own.
    pushed = enqueue_scan(redis_conn, REPO, DIGEST, ruleset=RULESET, settings=settings)
    reevaluation = enqueue_reevaluation(redis_conn, REPO, DIGEST, artifact=ARTIFACT, ruleset=RULESET, settings=settings)
    assert pushed.created and reevaluation.created
    assert _waiting(redis_conn, PUSH_QUEUE) == [pushed.job_id]
    assert _waiting(redis_conn, RESCAN_QUEUE) == [reevaluation.job_id]


def test_a_finished_reevaluation_absorbs_redeliveries_and_a_failed_one_is_redone(
    redis_conn: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, jobs: types.ModuleType
) -> None:
    outcomes = iter([{"status": "done"}])

    def scan(repository: str, digest: str) -> Any:
        try:
            return next(outcomes)
        except StopIteration:
            raise PermanentError("the registry refused") from None

    monkeypatch.setattr(jobs, "scan_image", scan, raising=False)
    monkeypatch.setattr(jobs, "on_scan_failed", lambda *args: None, raising=False)
    first = enqueue_reevaluation(redis_conn, REPO, DIGEST, artifact=ARTIFACT, ruleset=RULESET, settings=settings)
    run_worker(settings, burst=True, with_scheduler=False, simple=True)
    assert _fetch(redis_conn, first.job_id).get_status() == JobStatus.FINISHED
    # The registry redelivers the signature's notification after the re-evaluation ran: nothing new to do.
    assert not enqueue_reevaluation(
        redis_conn, REPO, DIGEST, artifact=ARTIFACT, ruleset=RULESET, settings=settings
    ).created
    other = digest_of("second signature")
    second = enqueue_reevaluation(redis_conn, REPO, DIGEST, artifact=other, ruleset=RULESET, settings=settings)
    run_worker(settings, burst=True, with_scheduler=False, simple=True)
    assert _fetch(redis_conn, second.job_id).get_status() == JobStatus.FAILED
    assert enqueue_reevaluation(redis_conn, REPO, DIGEST, artifact=other, ruleset=RULESET, settings=settings).created


@pytest.mark.parametrize(
    ("repository", "subject", "artifact"),
    [("Team/App", DIGEST, ARTIFACT), (REPO, "sha256:abc", ARTIFACT), (REPO, DIGEST, "latest")],
)
def test_a_reevaluation_refuses_bad_names(
    redis_conn: redis.Redis, settings: Settings, repository: str, subject: str, artifact: str
) -> None:
    with pytest.raises(ValueError):
        enqueue_reevaluation(redis_conn, repository, subject, artifact=artifact, ruleset=RULESET, settings=settings)
    assert _waiting(redis_conn, RESCAN_QUEUE) == []


def test_recheck_time_rounds_up_to_the_second_in_utc() -> None:
    at = datetime(2026, 11, 22, 14, 18, 38, 120_000, tzinfo=timezone(timedelta(hours=2)))
    assert recheck_time(at) == datetime(2026, 11, 22, 12, 18, 39, tzinfo=UTC)
    exact = datetime(2026, 11, 22, 12, 18, 39, tzinfo=UTC)
    assert recheck_time(exact) == exact
    assert recheck_job_id(REPO, DIGEST, at) == recheck_job_id(REPO, DIGEST, exact)
    with pytest.raises(ValueError, match="timezone-aware"):
        recheck_time(datetime(2026, 11, 22, 12, 18, 39))  # naive: whose clock?


def test_schedule_recheck_schedules_a_rescan_at_the_time(redis_conn: redis.Redis, settings: Settings) -> None:
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    enqueued = schedule_recheck(redis_conn, REPO, DIGEST, at, settings=settings)
    assert enqueued.created
    assert re.fullmatch(r"recheck-[0-9a-f]{64}", enqueued.job_id)
    assert enqueued.job_id == recheck_job_id(REPO, DIGEST, at)
    assert _scheduled(redis_conn) == [(enqueued.job_id, at)]
    assert _waiting(redis_conn, RESCAN_QUEUE) == []  # not before its time
    job = _fetch(redis_conn, enqueued.job_id)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.func_name == REVERIFY_FUNCTION
    assert job.args == [REPO, DIGEST]
    assert job.origin == RESCAN_QUEUE
    assert job.timeout == settings.job_timeout
    assert job.meta["reason"] == "recheck"
    assert queue_depths(redis_conn)["scheduled"] == 1


def test_schedule_recheck_is_idempotent_per_repository_digest_and_time(
    redis_conn: redis.Redis, settings: Settings
) -> None:
    at = datetime.now(UTC) + timedelta(minutes=10)
    first = schedule_recheck(redis_conn, REPO, DIGEST, at, settings=settings)
    again = schedule_recheck(redis_conn, REPO, DIGEST, at.astimezone(timezone(timedelta(hours=-5))), settings=settings)
    assert first.created and not again.created
    assert again.job_id == first.job_id
    later = schedule_recheck(redis_conn, REPO, DIGEST, at + timedelta(minutes=5), settings=settings)
    other = schedule_recheck(redis_conn, "team/other", DIGEST, at, settings=settings)
    assert later.created and other.created
    assert len({first.job_id, later.job_id, other.job_id}) == 3
    assert len(_scheduled(redis_conn)) == 3


def test_a_due_recheck_is_run_by_the_scheduling_worker(
    redis_conn: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, jobs: types.ModuleType
) -> None:
    ran: list[tuple[str, str]] = []
    monkeypatch.setattr(
        jobs, "reverify_image", lambda repository, digest: ran.append((repository, digest)), raising=False
    )
    due = schedule_recheck(redis_conn, REPO, DIGEST, datetime.now(UTC) - timedelta(seconds=1), settings=settings)
    future = schedule_recheck(redis_conn, REPO, DIGEST, datetime.now(UTC) + timedelta(hours=1), settings=settings)
    run_worker(settings, burst=True, with_scheduler=True, simple=True)
    assert ran == [(REPO, DIGEST)]
    assert _fetch(redis_conn, due.job_id).get_status() == JobStatus.FINISHED
    assert _fetch(redis_conn, future.job_id).get_status() == JobStatus.SCHEDULED
    # The recheck of that moment happened; asking again for the same moment does not repeat it.
    assert not schedule_recheck(
        redis_conn, REPO, DIGEST, datetime.fromisoformat(_fetch(redis_conn, due.job_id).meta["at"]), settings=settings
    ).created


def test_a_subject_lookup_is_queued_once(redis_conn: redis.Redis, settings: Settings) -> None:
    first = enqueue_subject_lookup(redis_conn, REPO, ARTIFACT, settings=settings)
    again = enqueue_subject_lookup(redis_conn, REPO, ARTIFACT, settings=settings)
    assert first.created and not again.created
    assert first.job_id == subject_lookup_job_id(REPO, ARTIFACT)
    job = _fetch(redis_conn, first.job_id)
    assert job.func_name == "workers.signature_jobs.reevaluate_subject"
    assert job.args == [REPO, ARTIFACT]
    assert _waiting(redis_conn, RESCAN_QUEUE) == [first.job_id]
