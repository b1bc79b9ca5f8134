"""The queue module against a real Redis: job ids, unique enqueueing, spent jobs, admission, the worker."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
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
    SCAN_FAILED_CALLBACK,
    SCAN_FUNCTION,
    Admission,
    ReconcileTicker,
    admit_push,
    enqueue_reconcile,
    enqueue_scan,
    failed_jobs,
    queue_depths,
    run_worker,
    scan_job_id,
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
