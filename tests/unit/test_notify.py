"""Outbound notifications against a real local receiver and a real Redis: formats, filters, retries, failures."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from tests.support.receiver import Receiver, closed_port, serve_receiver
from workers.errors import ConfigError
from workers.notify import DeliveryFailed, build_body, parse_target, parse_targets, retry_intervals, send
from workers.notify import notify as notify_event
from workers.queue import NOTIFY_QUEUE, failed_jobs, queue_depths, run_worker
from workers.settings import Settings

Configure = Callable[..., Settings]
DIGEST = "sha256:" + "ab" * 32
PAYLOAD = {
    "repository": "team/app",
    "digest": DIGEST,
    "tags": ["1.4", "latest"],
    "verdict": "malicious",
    "action": "quarantine",
    "reason": "malicious: miner.xmrig-config (critical, miner) at /opt/x/config.json",
    "actor": "system:tollgate",
    "copy": "quarantine/team/app",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as made:
        yield made


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[Configure]:
    """Set the environment the worker's delivery job reads; returns a function building the Settings."""
    for key in list(os.environ):
        if key.startswith("TOLLGATE_") and not key.startswith("TOLLGATE_TEST_"):
            monkeypatch.delenv(key)

    def apply(**values: str) -> Settings:
        env = {
            "TOLLGATE_REDIS_URL": redis_url,
            "TOLLGATE_PUBLIC_URL": "https://tollgate.example.test",
            "TOLLGATE_NOTIFY_BACKOFF": "0",
            "TOLLGATE_NOTIFY_TIMEOUT": "1",
            **values,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings.from_env()

    yield apply


def _work(settings: Settings) -> None:
    run_worker(settings, burst=True, with_scheduler=False, simple=True)


def _notify_jobs(conn: redis.Redis) -> list[Job]:
    queue = Queue(NOTIFY_QUEUE, connection=conn, serializer=JSONSerializer)
    return [j for j in Job.fetch_many(queue.get_job_ids(), connection=conn, serializer=JSONSerializer) if j]


def test_a_json_delivery_carries_the_event_the_link_and_a_verifiable_signature(
    configure: Configure, receiver: Receiver, redis_conn: redis.Redis
) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/ok", TOLLGATE_NOTIFY_SECRET="s3cret-for-hmac")
    notify_event(settings, "quarantine", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    assert receiver.url not in str(job.args) and "/ok" not in str(job.args)  # the URL is not in Redis
    _work(settings)
    (got,) = receiver.at("/ok")
    body = got.json()
    assert body["event"] == "quarantine" and body["image"] == f"team/app@{DIGEST}"
    assert body["verdict"] == "malicious" and body["action"] == "quarantine" and body["tags"] == ["1.4", "latest"]
    assert body["reason"] == PAYLOAD["reason"] and body["actor"] == "system:tollgate"
    assert body["link"] == f"https://tollgate.example.test/images/team/app@{DIGEST}"
    assert body["details"] == {"copy": "quarantine/team/app"}
    assert datetime.fromisoformat(body["time"]).tzinfo is not None
    expected = "sha256=" + hmac.new(b"s3cret-for-hmac", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-tollgate-signature"] == expected
    assert got.headers["x-tollgate-event"] == "quarantine" and got.headers["x-tollgate-delivery"] == job.id
    assert got.headers["content-type"] == "application/json"
    assert Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).return_value() == {
        "status": "delivered",
        "code": 204,
        "detail": "",
    }


def test_a_slack_target_gets_a_text_message(configure: Configure, receiver: Receiver) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"slack:{receiver.url}/ok")
    notify_event(settings, "release.failed", PAYLOAD)
    _work(settings)
    (got,) = receiver.at("/ok")
    body = got.json()
    assert set(body) == {"text"}
    assert body["text"].startswith(f"Tollgate: team/app@{DIGEST} could NOT be released (malicious): malicious:")
    assert f"<https://tollgate.example.test/images/team/app@{DIGEST}|details>" in body["text"]
    assert "x-tollgate-signature" not in got.headers  # no secret configured


def test_event_filters_per_target_and_by_default(configure: Configure, receiver: Receiver) -> None:
    settings = configure(
        TOLLGATE_NOTIFY_URLS=f"{receiver.url}/ok#events=release+scan.error, {receiver.url}/fail-0",
        TOLLGATE_NOTIFY_EVENTS="quarantine",
    )
    for event in ("quarantine", "release", "scan.error", "quarantine.failed"):
        notify_event(settings, event, PAYLOAD)
    _work(settings)
    assert [r.json()["event"] for r in receiver.at("/ok")] == ["release", "scan.error"]
    assert [r.json()["event"] for r in receiver.at("/fail-0")] == ["quarantine"]


def test_5xx_is_retried_until_delivered(configure: Configure, receiver: Receiver, redis_conn: redis.Redis) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/fail-2", TOLLGATE_NOTIFY_RETRIES="3")
    notify_event(settings, "quarantine", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    _work(settings)  # backoff 0: each retry is queued again at once and the burst worker takes it
    attempts = receiver.at("/fail-2")
    assert len(attempts) == 3
    assert len({a.body for a in attempts}) == 1  # the same document each time
    assert Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).get_status() is JobStatus.FINISHED


def test_retries_back_off_exponentially(configure: Configure, receiver: Receiver, redis_conn: redis.Redis) -> None:
    settings = configure(
        TOLLGATE_NOTIFY_URLS=f"{receiver.url}/fail-9", TOLLGATE_NOTIFY_BACKOFF="10", TOLLGATE_NOTIFY_RETRIES="5"
    )
    assert retry_intervals(settings) == [10, 20, 40, 80, 160]
    notify_event(settings, "quarantine", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    _work(settings)
    assert len(receiver.at("/fail-9")) == 1  # the next attempt waits for the scheduler, 10 s from now
    scheduled = ScheduledJobRegistry(NOTIFY_QUEUE, connection=redis_conn, serializer=JSONSerializer)
    assert scheduled.get_job_ids() == [job.id]
    again = Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    assert again.retries_left == 4 and again.retry_intervals == [10, 20, 40, 80, 160]
    assert retry_intervals(Settings(notify_backoff=600, notify_retries=4)) == [600, 1200, 2400, 3600]


@pytest.mark.parametrize("code", [400, 404, 410])
def test_4xx_is_given_up_at_once(
    configure: Configure, receiver: Receiver, redis_conn: redis.Redis, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/status-{code}")
    notify_event(settings, "quarantine", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    with caplog.at_level(logging.WARNING, logger="workers.notify"):
        _work(settings)
    assert len(receiver.at(f"/status-{code}")) == 1
    result = Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).return_value()
    assert result["status"] == "refused" and result["code"] == code
    assert "given up" in caplog.text and f"/status-{code}" not in caplog.text  # the host, never the path


def test_429_is_retried(configure: Configure, receiver: Receiver) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/status-429")
    with pytest.raises(DeliveryFailed, match="HTTP 429"):
        send(parse_targets(settings)[0], "quarantine", build_body(settings, "quarantine", PAYLOAD), settings=settings)


def test_an_unreachable_receiver_fails_the_job_without_crashing_anything(
    configure: Configure, redis_conn: redis.Redis
) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"http://127.0.0.1:{closed_port()}/hook", TOLLGATE_NOTIFY_RETRIES="1")
    notify_event(settings, "scan.error", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    _work(settings)
    failed = FailedJobRegistry(NOTIFY_QUEUE, connection=redis_conn, serializer=JSONSerializer)
    assert failed.get_job_ids() == [job.id]
    result = Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).latest_result()
    assert result is not None and "DeliveryFailed" in (result.exc_string or "")
    # The queue page shows it with the failed scans.
    assert [f["id"] for f in failed_jobs(redis_conn)] == [job.id] and queue_depths(redis_conn)["failed"] == 1


def test_a_slow_receiver_times_out_and_is_retried(configure: Configure, receiver: Receiver) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/slow", TOLLGATE_NOTIFY_TIMEOUT="0.2")
    receiver.slow_seconds = 1.0
    with pytest.raises(DeliveryFailed, match="timed out"):
        send(parse_targets(settings)[0], "release", build_body(settings, "release", PAYLOAD), settings=settings)


def test_redirects_are_followed_within_the_host_only(configure: Configure, receiver: Receiver) -> None:
    with serve_receiver() as elsewhere:
        settings = configure(
            TOLLGATE_NOTIFY_URLS=",".join(
                [f"{receiver.url}/redirect?to={receiver.url}/ok", f"{receiver.url}/redirect?to={elsewhere.url}/ok"]
            ),
            TOLLGATE_NOTIFY_SECRET="k",
        )
        body = build_body(settings, "quarantine", PAYLOAD)
        same, other = parse_targets(settings)
        assert send(same, "quarantine", body, settings=settings).status == "delivered"
        outcome = send(other, "quarantine", body, settings=settings)
        assert outcome.status == "refused" and outcome.detail == "redirect to another host not followed"
        assert elsewhere.received == []  # the signed body never left for the other host
    assert len(receiver.at("/ok")) == 1 and len(receiver.at("/redirect")) == 2


def test_redis_down_is_logged_and_never_raised(configure: Configure, caplog: pytest.LogCaptureFixture) -> None:
    settings = configure(
        TOLLGATE_NOTIFY_URLS="https://hooks.example.test/x", TOLLGATE_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"
    )
    with caplog.at_level(logging.WARNING, logger="workers.notify"):
        notify_event(settings, "quarantine", PAYLOAD)  # returns: the pipeline goes on
    assert "notification 'quarantine' not queued" in caplog.text


def test_nothing_is_queued_without_targets(configure: Configure, redis_conn: redis.Redis) -> None:
    settings = configure()
    notify_event(settings, "quarantine", PAYLOAD)
    assert _notify_jobs(redis_conn) == []


def test_a_target_removed_from_the_settings_is_dropped(
    configure: Configure, receiver: Receiver, redis_conn: redis.Redis
) -> None:
    settings = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/ok")
    notify_event(settings, "quarantine", PAYLOAD)
    (job,) = _notify_jobs(redis_conn)
    later = configure(TOLLGATE_NOTIFY_URLS=f"{receiver.url}/status-500")
    _work(later)
    assert receiver.received == []
    assert Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).return_value()["status"] == "dropped"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://hooks.example.test/x", "must be an http:// or https:// URL"),
        ("hooks.example.test/x", "must be an http:// or https:// URL"),
        ("https://user:pa55@hooks.example.test/x", "not user:pass@"),
        ("https://hooks.example.test/x#events=quarantine+explode", "unknown event explode"),
        ("https://hooks.example.test/x#foo=bar", "the only fragment understood is #events="),
    ],
)
def test_bad_targets_fail_at_boot_without_echoing_the_url(
    configure: Configure, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    monkeypatch.setenv("TOLLGATE_NOTIFY_URLS", value)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env()
    assert message in str(refused.value) and "pa55" not in str(refused.value)


def test_an_unknown_default_event_fails_at_boot(configure: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    configure()
    monkeypatch.setenv("TOLLGATE_NOTIFY_EVENTS", "quarantine,reboot")
    with pytest.raises(ConfigError, match="TOLLGATE_NOTIFY_EVENTS: unknown event reboot"):
        Settings.from_env()


def test_the_fragment_is_ours_and_never_sent() -> None:
    target = parse_target("slack:https://hooks.example.test/services/T0/B0/xyz?a=1#events=release|quarantine")
    assert target.url == "https://hooks.example.test/services/T0/B0/xyz?a=1"
    assert target.events == frozenset({"release", "quarantine"})
    assert "xyz" not in target.describe() and target.describe().startswith("slack https://hooks.example.test/")


def test_hostile_payload_text_is_bounded_and_printable(configure: Configure) -> None:
    settings = configure()
    body = build_body(settings, "scan.error", {**PAYLOAD, "reason": "\x1b[2J" + "x" * 100_000})
    assert len(body["reason"]) == 2000 and "\x1b" not in body["reason"]
