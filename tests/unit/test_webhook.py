"""The webhook and the app factory through Flask's test client, with a real store and a real Redis."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

import service
from service import create_app
from service.api import STORE_EXTENSION
from service.webhook import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    REDIS_EXTENSION,
    RULESET_EXTENSION,
    SETTINGS_EXTENSION,
    PushEvent,
    Skipped,
    parse_event,
)
from tests.support.storage import digest_of, make_report
from workers.domain import ScanStatus
from workers.errors import ConfigError
from workers.queue import PUSH_QUEUE, RESCAN_QUEUE, reevaluation_job_id, scan_job_id
from workers.settings import Settings
from workers.store import Store

TOKEN = "s3cr3t-webhook-token"
RULESET = "rules-test-1"
REPO = "team/app"
DIGEST = digest_of("manifest")
V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def push_event(
    repository: str = REPO, digest: str = DIGEST, tag: str | None = "1.0", media_type: str = OCI_MANIFEST, **extra: Any
) -> dict[str, Any]:
    """A push event shaped like distribution 2.8.2 sends it."""
    target: dict[str, Any] = {
        "mediaType": media_type,
        "size": 418,
        "length": 418,
        "digest": digest,
        "repository": repository,
        "url": f"http://evil.example/v2/{repository}/manifests/{digest}",
    }
    if tag is not None:
        target["tag"] = tag
    event = {
        "id": "9785a0dd-0000-4000-8000-000000000001",
        "timestamp": "2026-11-22T14:18:38.89Z",
        "action": "push",
        "target": target,
        "request": {"id": "da27", "addr": "10.0.0.7:36356", "host": "reg:5000", "method": "PUT", "useragent": "t"},
        "actor": {},
        "source": {"addr": "reg-node-1:5000", "instanceID": "a997"},
    }
    event.update(extra)
    return event


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def make_settings(redis_url: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "webhook_token": TOKEN,
        "secret_key": "test-secret",
        "reconcile_interval": 0,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'webhook.db'}"


@pytest.fixture
def fixed_ruleset(monkeypatch: pytest.MonkeyPatch) -> str:
    """Pin the ruleset version so job ids are predictable; the rules loader has its own tests."""
    monkeypatch.setattr(service, "current_ruleset", lambda _settings: RULESET)
    return RULESET


@pytest.fixture
def app(redis_url: str, sqlite_url: str, fixed_ruleset: str) -> Flask:
    return create_app(make_settings(redis_url, sqlite_url))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(
    client: FlaskClient,
    body: bytes,
    *,
    token: str | None = TOKEN,
    content_type: str | None = V1,
    headers: dict[str, str] | None = None,
) -> Any:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return client.post("/hooks/registry", data=body, content_type=content_type, headers=sent)


def push_jobs(conn: redis.Redis) -> list[str]:
    return Queue(PUSH_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()


def rescan_jobs(conn: redis.Redis) -> list[str]:
    return Queue(RESCAN_QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()


def outcomes(response: Any) -> list[str]:
    return [event["outcome"] for event in response.get_json()["events"]]


def error_body(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "reason"}
    assert body["reason"]
    return body


# -- the app factory ---------------------------------------------------------------------------------------------


def test_create_app_wires_settings_store_redis_and_ruleset(redis_url: str, sqlite_url: str) -> None:
    settings = make_settings(redis_url, sqlite_url)
    app = create_app(settings)
    assert app.config["SECRET_KEY"] == "test-secret"
    assert app.extensions[SETTINGS_EXTENSION] is settings
    assert isinstance(app.extensions[STORE_EXTENSION], Store)
    assert isinstance(app.extensions[REDIS_EXTENSION], redis.Redis)
    ruleset = app.extensions[RULESET_EXTENSION]
    assert isinstance(ruleset, str) and ruleset
    from rules.loader import ruleset_version

    assert ruleset == ruleset_version(settings.rules_dir, settings.rules_extra)
    assert app.test_client().get("/api/v1/health").status_code == 200  # migrated once at start


def test_create_app_fails_loudly_without_the_rules_loader(
    redis_url: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rules.loader", None)  # makes the import fail
    with pytest.raises(ConfigError, match="ruleset_version"):
        create_app(make_settings(redis_url, sqlite_url))


def test_create_app_refuses_an_unauthenticated_webhook(redis_url: str, sqlite_url: str, fixed_ruleset: str) -> None:
    with pytest.raises(ConfigError, match="TOLLGATE_WEBHOOK_TOKEN"):
        create_app(make_settings(redis_url, sqlite_url, webhook_token=""))


def test_explicitly_insecure_webhook_accepts_without_a_token(
    redis_url: str, redis_conn: redis.Redis, sqlite_url: str, fixed_ruleset: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(redis_url, sqlite_url, webhook_token="", webhook_allow_unauthenticated=True)
    app = create_app(settings)
    assert "INSECURE" in caplog.text
    response = post(app.test_client(), envelope(push_event()), token=None)
    assert response.status_code == 202
    assert push_jobs(redis_conn) == [scan_job_id(REPO, DIGEST, RULESET)]


def test_the_insecure_switch_does_not_disable_a_configured_token(
    redis_url: str, sqlite_url: str, fixed_ruleset: str
) -> None:
    app = create_app(make_settings(redis_url, sqlite_url, webhook_allow_unauthenticated=True))
    assert post(app.test_client(), envelope(push_event()), token=None).status_code == 401


def test_insecure_switch_from_the_environment(redis_url: str, sqlite_url: str) -> None:
    env = {"TOLLGATE_WEBHOOK_ALLOW_UNAUTHENTICATED": "true"}
    assert Settings.from_env(env).webhook_allow_unauthenticated
    assert not Settings.from_env({}).webhook_allow_unauthenticated


# -- authentication ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ✓"],
)
def test_wrong_or_missing_token_is_401(client: FlaskClient, redis_conn: redis.Redis, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = post(client, envelope(push_event()), token=None, headers=headers)
    error_body(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert push_jobs(redis_conn) == []


def test_scheme_is_case_insensitive(client: FlaskClient) -> None:
    response = post(client, envelope(push_event()), token=None, headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 202


def test_unauthenticated_requests_are_refused_before_the_body_is_read(client: FlaskClient) -> None:
    response = post(client, b"x" * (MAX_BODY_BYTES + 10), token=None, content_type="text/plain")
    error_body(response, 401)


# -- content type, size, envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [V1, V2, "application/json", f"{V1}; charset=utf-8", "Application/JSON"])
def test_accepted_envelope_types(client: FlaskClient, content_type: str) -> None:
    assert post(client, envelope(push_event()), content_type=content_type).status_code == 202


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_other_content_types_are_415(client: FlaskClient, content_type: str | None) -> None:
    body = error_body(post(client, envelope(push_event()), content_type=content_type), 415)
    assert "Content-Type" in body["reason"]


def test_oversized_body_is_413(client: FlaskClient, redis_conn: redis.Redis) -> None:
    padding = "x" * MAX_BODY_BYTES
    error_body(post(client, envelope(push_event(padding=padding))), 413)
    assert push_jobs(redis_conn) == []


def test_too_many_events_is_413(client: FlaskClient) -> None:
    events = [push_event(action="pull") for _ in range(MAX_EVENTS + 1)]
    error_body(post(client, envelope(*events)), 413)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"[]", "object"),
        (b'"events"', "object"),
        (b"{}", "events"),
        (b'{"events": {"0": {}}}', "events"),
        (b'{"events": null}', "events"),
        (b"[" * 100_000 + b"]" * 100_000, ""),  # nesting deep enough to exhaust a recursive parser
    ],
)
def test_malformed_envelopes_are_400_with_a_reason(client: FlaskClient, body: bytes, reason: str) -> None:
    found = error_body(post(client, body), 400)
    assert reason in found["reason"]


def test_get_is_a_json_405(client: FlaskClient) -> None:
    response = client.get("/hooks/registry")
    error_body(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unknown_hook_is_a_json_404(client: FlaskClient) -> None:
    error_body(client.post("/hooks/harbor"), 404)


# -- event classification ----------------------------------------------------------------------------------------


def _classify(raw: Any) -> PushEvent | Skipped:
    return parse_event(raw, quarantine_prefix="quarantine/")


def test_a_tagged_push_is_kept() -> None:
    assert _classify(push_event()) == PushEvent(repository=REPO, digest=DIGEST, tag="1.0", media_type=OCI_MANIFEST)


def test_a_push_by_digest_has_no_tag() -> None:
    kept = _classify(push_event(tag=None))
    assert isinstance(kept, PushEvent)
    assert kept.tag is None
    assert isinstance(_classify(push_event(tag="")), PushEvent)


@pytest.mark.parametrize(
    "media_type",
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        # Schema 1 cannot be scanned, but must end as a recorded error, never as nothing at all.
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    ],
)
def test_every_manifest_type_is_kept(media_type: str) -> None:
    assert isinstance(_classify(push_event(media_type=media_type)), PushEvent)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (push_event(action="pull"), "ignored:pull"),
        (push_event(action="mount"), "ignored:mount"),
        (push_event(action="delete"), "ignored:delete"),
        (push_event(action="rm -rf"), "ignored:unknown action"),
        (push_event(media_type="application/octet-stream", tag=None), "ignored:blob push"),
        (push_event(media_type="text/html"), "ignored:not a manifest media type"),
        (push_event(repository="quarantine/team/app"), "ignored:quarantine repository"),
        ("push", "invalid:event is not an object"),
        (None, "invalid:event is not an object"),
        ({"target": {}}, "invalid:action is missing"),
        (push_event(action=["push"]), "invalid:action is missing"),
        (push_event(target="x"), "invalid:target is missing"),
        (push_event(media_type=""), "invalid:target.mediaType is missing"),
        (push_event(digest="sha256:abc"), "invalid:target.digest is not a sha256/sha512 digest"),
        (push_event(digest="md5:" + "0" * 32), "invalid:target.digest is not a sha256/sha512 digest"),
        (push_event(digest=12), "invalid:target.digest is not a sha256/sha512 digest"),
        (push_event(repository="Team/App"), "invalid:target.repository is not a repository name"),
        (push_event(repository="../etc"), "invalid:target.repository is not a repository name"),
        (push_event(repository="a/" * 200 + "b"), "invalid:target.repository is not a repository name"),
        (push_event(repository=None), "invalid:target.repository is not a repository name"),
        (push_event(tag="-bad"), "invalid:target.tag is not a tag"),
        (push_event(tag="x" * 129), "invalid:target.tag is not a tag"),
        (push_event(tag=7), "invalid:target.tag is not a tag"),
    ],
)
def test_skipped_events_say_why(raw: Any, outcome: str) -> None:
    assert _classify(raw) == Skipped(outcome)


def test_the_quarantine_prefix_is_a_setting() -> None:
    assert isinstance(parse_event(push_event(repository="quarantine/x"), quarantine_prefix=""), PushEvent)


# -- intake ------------------------------------------------------------------------------------------------------


def test_a_push_is_recorded_and_queued(client: FlaskClient, app: Flask, redis_conn: redis.Redis) -> None:
    response = post(client, envelope(push_event()))
    assert response.status_code == 202
    body = response.get_json()
    job_id = scan_job_id(REPO, DIGEST, RULESET)
    assert body["events"] == [
        {
            "index": 0,
            "id": "9785a0dd-0000-4000-8000-000000000001",
            "repository": REPO,
            "digest": DIGEST,
            "tag": "1.0",
            "outcome": "queued",
            "job_id": job_id,
        }
    ]
    assert body["counts"] == {"queued": 1}
    assert push_jobs(redis_conn) == [job_id]
    record = app.extensions[STORE_EXTENSION].get_record(REPO, DIGEST)
    assert record.status == ScanStatus.QUEUED
    assert record.job_id == job_id
    assert record.tags == ("1.0",)


def test_a_mixed_envelope_reports_each_event(client: FlaskClient, redis_conn: redis.Redis) -> None:
    other = digest_of("other")
    response = post(
        client,
        envelope(
            push_event(media_type="application/octet-stream", tag=None),
            push_event(action="pull"),
            push_event(digest="sha256:nope"),
            push_event(digest=other, tag=None),
            push_event(repository="Bad Name"),
            push_event(),
        ),
    )
    assert response.status_code == 202
    assert outcomes(response) == [
        "ignored:blob push",
        "ignored:pull",
        "invalid:target.digest is not a sha256/sha512 digest",
        "queued",
        "invalid:target.repository is not a repository name",
        "queued",
    ]
    assert response.get_json()["counts"] == {"ignored": 2, "invalid": 2, "queued": 2}
    assert sorted(push_jobs(redis_conn)) == sorted(
        [scan_job_id(REPO, other, RULESET), scan_job_id(REPO, DIGEST, RULESET)]
    )


def test_an_envelope_of_only_noise_is_accepted(client: FlaskClient, redis_conn: redis.Redis) -> None:
    response = post(client, envelope(push_event(action="pull"), push_event(action="pull")))
    assert response.status_code == 202  # refusing would make the registry retry the pulls forever
    assert push_jobs(redis_conn) == []
    assert post(client, b'{"events": []}').status_code == 202


def test_attacker_strings_are_clipped_in_the_response(client: FlaskClient) -> None:
    response = post(client, envelope(push_event(id="i" * 10_000, action="pull")))
    assert response.get_json()["events"][0]["id"] == "i" * 128


def test_target_url_is_never_fetched(client: FlaskClient, app: Flask) -> None:
    # The event's URL points elsewhere; the record is keyed on repository and digest only.
    post(client, envelope(push_event()))
    record = app.extensions[STORE_EXTENSION].get_record(REPO, DIGEST)
    assert "evil.example" not in json.dumps(record.to_json())


# -- idempotence (both database backends) -------------------------------------------------------------------------


@pytest.fixture
def both_backends_client(redis_url: str, database_url: str, fixed_ruleset: str) -> FlaskClient:
    return create_app(make_settings(redis_url, database_url)).test_client()


def test_redelivery_creates_no_second_job(both_backends_client: FlaskClient, redis_conn: redis.Redis) -> None:
    client = both_backends_client
    first = post(client, envelope(push_event()))
    again = post(client, envelope(push_event()))
    assert outcomes(first) == ["queued"]
    assert outcomes(again) == ["duplicate"]
    assert push_jobs(redis_conn) == [scan_job_id(REPO, DIGEST, RULESET)]


def test_a_second_tag_is_recorded_without_a_second_job(
    client: FlaskClient, app: Flask, redis_conn: redis.Redis
) -> None:
    post(client, envelope(push_event(tag="1.0")))
    response = post(client, envelope(push_event(tag="latest")))
    assert outcomes(response) == ["duplicate"]
    assert len(push_jobs(redis_conn)) == 1
    assert set(app.extensions[STORE_EXTENSION].tags_of(REPO, DIGEST)) == {"1.0", "latest"}


def test_an_already_vetted_digest_gets_its_new_tag_and_no_job(
    client: FlaskClient, app: Flask, redis_conn: redis.Redis
) -> None:
    store: Store = app.extensions[STORE_EXTENSION]
    store.record_push(REPO, DIGEST, tag="1.0", media_type=OCI_MANIFEST)
    store.save_report(make_report(REPO, DIGEST, ruleset=RULESET))
    response = post(client, envelope(push_event(tag="prod")))
    assert response.status_code == 202
    assert outcomes(response) == ["already-vetted"]
    assert push_jobs(redis_conn) == []
    assert "prod" in store.tags_of(REPO, DIGEST)


def test_a_multi_arch_push_sequence_queues_each_manifest_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    amd64, arm64, index = digest_of("amd64"), digest_of("arm64"), digest_of("index")
    sequence = [
        push_event(media_type="application/octet-stream", digest=digest_of("layer"), tag=None),
        push_event(digest=amd64, tag=None),
        push_event(digest=arm64, tag=None),
        push_event(digest=index, media_type=OCI_INDEX, tag="v1"),
    ]
    for event in sequence:  # 2.8 sends one event per POST
        assert post(client, envelope(event)).status_code == 202
    assert sorted(push_jobs(redis_conn)) == sorted(scan_job_id(REPO, d, RULESET) for d in (amd64, arm64, index))


# -- outages -----------------------------------------------------------------------------------------------------


def test_redis_down_is_503_and_nothing_is_marked_queued(
    redis_url: str, redis_conn: redis.Redis, sqlite_url: str, fixed_ruleset: str, free_port: int
) -> None:
    down = create_app(make_settings(f"redis://127.0.0.1:{free_port}/0", sqlite_url))
    response = post(down.test_client(), envelope(push_event()))
    error_body(response, 503)
    assert int(response.headers["Retry-After"]) > 0
    record = down.extensions[STORE_EXTENSION].get_record(REPO, DIGEST)
    assert record is not None and record.job_id is None  # seen, but no job claimed
    # The registry redelivers once Redis is back: the job is created then.
    up = create_app(make_settings(redis_url, sqlite_url))
    assert outcomes(post(up.test_client(), envelope(push_event()))) == ["queued"]
    assert push_jobs(redis_conn) == [scan_job_id(REPO, DIGEST, RULESET)]


def test_database_down_is_503_and_nothing_is_queued(app: Flask, redis_conn: redis.Redis, free_port: int) -> None:
    app.extensions[STORE_EXTENSION] = Store(f"postgresql+psycopg://postgres@127.0.0.1:{free_port}/nothing")
    response = post(app.test_client(), envelope(push_event()))
    error_body(response, 503)
    assert "Retry-After" in response.headers
    assert push_jobs(redis_conn) == []


def test_oversized_chunked_body_without_length_is_413(client: FlaskClient, redis_conn: redis.Redis) -> None:
    big = envelope(push_event(padding="x" * MAX_BODY_BYTES))
    response = client.post(
        "/hooks/registry",
        input_stream=io.BytesIO(big),
        content_type=V1,
        headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.request.content_length is None  # really no announced length
    error_body(response, 413)
    assert push_jobs(redis_conn) == []


def test_chunked_body_within_the_cap_is_read(client: FlaskClient) -> None:
    response = client.post(
        "/hooks/registry",
        input_stream=io.BytesIO(envelope(push_event())),
        content_type=V1,
        headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert outcomes(response) == ["queued"]


@pytest.mark.parametrize("chunked", [False, True])
def test_the_cap_is_exact(client: FlaskClient, chunked: bool) -> None:
    """A body of exactly the cap is read; one byte more is refused, with or without a Content-Length."""
    base = envelope(push_event(padding=""))
    at_cap = base.replace(b'"padding": ""', b'"padding": "' + b"x" * (MAX_BODY_BYTES - len(base)) + b'"')
    assert len(at_cap) == MAX_BODY_BYTES
    over = at_cap[:-1] + b" }"
    for body, status in ((at_cap, 202), (over, 413)):
        kwargs: dict[str, Any] = {"data": body}
        if chunked:
            kwargs = {
                "input_stream": io.BytesIO(body),
                "headers": {"Transfer-Encoding": "chunked"},
                "environ_overrides": {"wsgi.input_terminated": True},
            }
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        response = client.post("/hooks/registry", content_type=V1, headers=headers, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)[:200]


# -- signatures re-evaluate their subject -------------------------------------------------------------------------

SUBJECT = digest_of("image")
SUBJECT_HEX = SUBJECT.removeprefix("sha256:")
SIGNATURE = digest_of("signature manifest")


@pytest.mark.parametrize(
    ("tag", "media_type"),
    [
        (f"sha256-{SUBJECT_HEX}.sig", OCI_MANIFEST),  # cosign legacy signature
        (f"sha256-{SUBJECT_HEX}.att", OCI_MANIFEST),  # cosign legacy attestation
        (f"sha256-{SUBJECT_HEX}", OCI_INDEX),  # the referrers fallback index of registries without the API
        (f"sha256-{SUBJECT_HEX}.sig", "application/vnd.docker.distribution.manifest.v2+json"),
    ],
)
def test_a_signature_tag_queues_a_rescan_of_its_subject(
    client: FlaskClient, app: Flask, redis_conn: redis.Redis, tag: str, media_type: str
) -> None:
    response = post(client, envelope(push_event(digest=SIGNATURE, tag=tag, media_type=media_type)))
    assert response.status_code == 202
    job_id = reevaluation_job_id(REPO, SUBJECT, RULESET, SIGNATURE)
    assert response.get_json()["events"] == [
        {
            "index": 0,
            "id": "9785a0dd-0000-4000-8000-000000000001",
            "repository": REPO,
            "digest": SIGNATURE,
            "tag": tag,
            "subject": SUBJECT,
            "outcome": "reevaluation-queued",
            "job_id": job_id,
        }
    ]
    assert response.get_json()["counts"] == {"reevaluation-queued": 1}
    assert rescan_jobs(redis_conn) == [job_id]
    assert push_jobs(redis_conn) == []
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.func_name == "workers.jobs.scan_image"
    assert job.args == [REPO, SUBJECT]  # the image is rescanned, not the artifact
    assert job.meta["artifact"] == SIGNATURE
    store: Store = app.extensions[STORE_EXTENSION]
    assert store.get_record(REPO, SIGNATURE) is None  # the artifact is not an image and gets no record
    assert store.get_record(REPO, SUBJECT) is None  # the scan job records the image when it runs


def test_a_signature_re_evaluates_an_image_already_vetted_under_the_ruleset(
    client: FlaskClient, app: Flask, redis_conn: redis.Redis
) -> None:
    store: Store = app.extensions[STORE_EXTENSION]
    store.record_push(REPO, SUBJECT, tag="1.0", media_type=OCI_MANIFEST)
    store.save_report(make_report(REPO, SUBJECT, ruleset=RULESET))
    assert outcomes(post(client, envelope(push_event(digest=SUBJECT, tag="1.0")))) == ["already-vetted"]
    response = post(client, envelope(push_event(digest=SIGNATURE, tag=f"sha256-{SUBJECT_HEX}.sig")))
    assert outcomes(response) == ["reevaluation-queued"]
    assert rescan_jobs(redis_conn) == [reevaluation_job_id(REPO, SUBJECT, RULESET, SIGNATURE)]


def test_a_signature_re_evaluates_even_while_the_push_scan_is_waiting(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    # The push scan may already have looked for signatures; the re-evaluation must not collapse into it.
    assert outcomes(post(client, envelope(push_event(digest=SUBJECT, tag="1.0")))) == ["queued"]
    response = post(client, envelope(push_event(digest=SIGNATURE, tag=f"sha256-{SUBJECT_HEX}.sig")))
    assert outcomes(response) == ["reevaluation-queued"]
    assert push_jobs(redis_conn) == [scan_job_id(REPO, SUBJECT, RULESET)]
    assert rescan_jobs(redis_conn) == [reevaluation_job_id(REPO, SUBJECT, RULESET, SIGNATURE)]


def test_a_redelivered_signature_is_one_job_and_a_second_signature_another(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    tag = f"sha256-{SUBJECT_HEX}.sig"
    first = post(client, envelope(push_event(digest=SIGNATURE, tag=tag)))
    again = post(client, envelope(push_event(digest=SIGNATURE, tag=tag)))
    assert outcomes(first) == ["reevaluation-queued"]
    assert outcomes(again) == ["duplicate"]
    assert again.get_json()["events"][0]["job_id"] == first.get_json()["events"][0]["job_id"]
    # A co-signer appends a layer: the .sig manifest has a new digest, and the image is looked at again.
    cosigned = digest_of("signature manifest with a second layer")
    assert outcomes(post(client, envelope(push_event(digest=cosigned, tag=tag)))) == ["reevaluation-queued"]
    assert sorted(rescan_jobs(redis_conn)) == sorted(
        [reevaluation_job_id(REPO, SUBJECT, RULESET, SIGNATURE), reevaluation_job_id(REPO, SUBJECT, RULESET, cosigned)]
    )


def test_the_subject_is_looked_up_in_the_pushed_repository(client: FlaskClient, redis_conn: redis.Redis) -> None:
    tag = f"sha256-{SUBJECT_HEX}.sig"
    post(client, envelope(push_event(digest=SIGNATURE, tag=tag)))
    post(client, envelope(push_event(repository="team/other", digest=SIGNATURE, tag=tag)))
    assert sorted(rescan_jobs(redis_conn)) == sorted(
        [
            reevaluation_job_id(REPO, SUBJECT, RULESET, SIGNATURE),
            reevaluation_job_id("team/other", SUBJECT, RULESET, SIGNATURE),
        ]
    )


@pytest.mark.parametrize(
    "tag",
    [
        "sha256-xyz.sig",
        f"sha256-{SUBJECT_HEX[:63]}.sig",  # one hex digit short
        f"sha256-{SUBJECT_HEX}0.sig",  # one too many
        f"sha256-{SUBJECT_HEX.upper()}.sig",  # cosign writes lowercase hex, as digests are
        f"sha256-{SUBJECT_HEX}.sbom",  # not a kind that changes signatures
        f"sha256-{SUBJECT_HEX}.sig.sig",
        f"sha512-{SUBJECT_HEX}.sig",
        f"v1-sha256-{SUBJECT_HEX}.sig",
        "sig",
    ],
)
def test_look_alike_tags_are_ordinary_tags(client: FlaskClient, app: Flask, redis_conn: redis.Redis, tag: str) -> None:
    response = post(client, envelope(push_event(digest=SIGNATURE, tag=tag)))
    assert outcomes(response) == ["queued"]
    assert push_jobs(redis_conn) == [scan_job_id(REPO, SIGNATURE, RULESET)]
    assert rescan_jobs(redis_conn) == []
    assert app.extensions[STORE_EXTENSION].get_record(REPO, SIGNATURE).tags == (tag,)


def test_a_referrer_pushed_by_digest_is_admitted_like_any_manifest(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    # Without a telling tag the event cannot say whether the manifest has a subject (target.url is never
    # fetched); the worker reads it from the registry and records the artifact as not an image.
    response = post(client, envelope(push_event(digest=SIGNATURE, tag=None)))
    assert outcomes(response) == ["queued"]
    assert push_jobs(redis_conn) == [scan_job_id(REPO, SIGNATURE, RULESET)]


def test_a_signature_push_while_redis_is_down_is_503(
    redis_url: str, sqlite_url: str, fixed_ruleset: str, free_port: int
) -> None:
    down = create_app(make_settings(f"redis://127.0.0.1:{free_port}/0", sqlite_url))
    response = post(down.test_client(), envelope(push_event(digest=SIGNATURE, tag=f"sha256-{SUBJECT_HEX}.att")))
    error_body(response, 503)
    assert down.extensions[STORE_EXTENSION].get_record(REPO, SIGNATURE) is None
