"""The webhook against the real registry (distribution 2.8.2): notifications in, exactly one job out, 503 on outages."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from rq import Queue
from rq.serializers import JSONSerializer
from werkzeug.serving import BaseWSGIServer, make_server

from service import create_app
from service.api import STORE_EXTENSION
from service.webhook import RULESET_EXTENSION
from tests.support.oci import tar_layer, write_image_layout
from workers.domain import MANIFEST_MEDIA_TYPES
from workers.queue import PUSH_QUEUE, RESCAN_QUEUE, scan_job_id
from workers.settings import Settings

pytestmark = pytest.mark.functional

REPO = "team/app"
WAIT_SECONDS = 30.0  # generous: the registry delivers asynchronously and backs off on failures


@dataclass
class Delivery:
    """One request the registry made to the webhook, and our answer."""

    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class RecordingServer:
    """The real app on a real HTTP port, wrapped to remember each webhook delivery (for exact redelivery)."""

    app: Flask
    server: BaseWSGIServer
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/hooks/registry"

    def manifest_pushes(self) -> list[Delivery]:
        """Deliveries that carry a manifest push (blob pushes and pulls are noise here)."""
        return [d for d in self.deliveries if any(_is_manifest_push(e) for e in _events(d.body))]


def _events(body: bytes) -> list[dict[str, Any]]:
    try:
        events = json.loads(body).get("events", [])
    except (ValueError, AttributeError):
        return []
    return [e for e in events if isinstance(e, dict)]


def _is_manifest_push(event: dict[str, Any]) -> bool:
    target = event.get("target") or {}
    return event.get("action") == "push" and target.get("mediaType") in MANIFEST_MEDIA_TYPES


def _recording(app: Flask, deliveries: list[Delivery]) -> Callable[..., Iterable[bytes]]:
    """A WSGI wrapper that keeps the request body and the response status of every webhook call."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/hooks/registry":
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if "CONTENT_TYPE" in environ:
            headers["Content-Type"] = environ["CONTENT_TYPE"]

        def recording_start(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            deliveries.append(Delivery(headers=headers, body=body, status=int(status.split(maxsplit=1)[0])))
            return start_response(status, response_headers, exc_info)

        return app(environ, recording_start)

    return wsgi


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Settings], RecordingServer]]:
    """Start ``create_app(settings)`` behind the recorder on a free port; stopped after the test."""
    servers: list[BaseWSGIServer] = []

    def start(settings: Settings) -> RecordingServer:
        app = create_app(settings)
        deliveries: list[Delivery] = []
        server = make_server("127.0.0.1", 0, _recording(app, deliveries), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return RecordingServer(app=app, server=server, deliveries=deliveries)

    yield start
    for server in servers:
        server.shutdown()


def _settings(redis_url: str, tmp_path: Path, token: str) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_url,
        database_url=f"sqlite:///{tmp_path / 'tollgate.db'}",
        webhook_token=token,
        secret_key=secrets.token_hex(16),
        reconcile_interval=0,
        registry_use_docker_config=False,
    )


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT_SECONDS}s waiting for {what}")


def _all_jobs(conn: redis.Redis) -> list[str]:
    return [
        job_id
        for name in (PUSH_QUEUE, RESCAN_QUEUE)
        for job_id in Queue(name, connection=conn, serializer=JSONSerializer).get_job_ids()
    ]


def _layout(path: Path) -> str:
    """A one-layer OCI image layout; returns its manifest digest."""
    layer = tar_layer({"etc/os-release": b"ID=debian\n", "usr/local/bin/app": b"#!/bin/sh\necho hi\n"})
    return write_image_layout(path, [layer])


def test_a_push_is_queued_exactly_once_even_when_redelivered(
    serve: Callable[[Settings], RecordingServer],
    registry_factory: Callable[..., Any],
    redis_url: str,
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    token = secrets.token_urlsafe(24)
    live = serve(_settings(redis_url, tmp_path, token))
    registry = registry_factory(notify_url=live.webhook_url, notify_token=token)
    digest = _layout(tmp_path / "layout")

    registry.push_layout(tmp_path / "layout", REPO, "v1")
    _wait_for(lambda: bool(live.manifest_pushes()), "the registry's manifest push notification")
    _wait_for(lambda: bool(_all_jobs(redis_conn)), "the scan job in Redis")

    delivery = live.manifest_pushes()[0]
    assert delivery.status == 202
    assert delivery.headers["Content-Type"].startswith("application/vnd.docker.distribution.events.v")
    ruleset = live.app.extensions[RULESET_EXTENSION]
    job_id = scan_job_id(REPO, digest, ruleset)
    assert _all_jobs(redis_conn) == [job_id]
    record = live.app.extensions[STORE_EXTENSION].get_record(REPO, digest)
    assert record is not None
    assert record.status == "queued"
    assert record.job_id == job_id
    assert record.tags == ("v1",)

    # The registry resends an envelope it thinks was not delivered (e.g. our 202 came after its timeout).
    again = httpx.post(
        live.webhook_url,
        content=delivery.body,
        headers={"Content-Type": delivery.headers["Content-Type"], "Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert again.status_code == 202
    assert [e["outcome"] for e in again.json()["events"] if "job_id" in e] == ["duplicate"]
    # The same image pushed under a second tag: a new notification, still no second job.
    # The test's own redelivery went through the recorder too, so wait for the delivery naming the new tag.
    registry.push_layout(tmp_path / "layout", REPO, "latest")

    def latest_pushes() -> list[Delivery]:
        return [
            d
            for d in live.manifest_pushes()
            if any(_is_manifest_push(e) and (e.get("target") or {}).get("tag") == "latest" for e in _events(d.body))
        ]

    _wait_for(lambda: bool(latest_pushes()), "the second tag's notification")
    assert latest_pushes()[0].status == 202
    assert _all_jobs(redis_conn) == [job_id]
    record = live.app.extensions[STORE_EXTENSION].get_record(REPO, digest)
    assert set(record.tags) == {"v1", "latest"}


def test_the_webhook_refuses_requests_without_the_token(
    serve: Callable[[Settings], RecordingServer], redis_url: str, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    live = serve(_settings(redis_url, tmp_path, secrets.token_urlsafe(24)))
    envelope = {"events": [{"action": "push", "target": {"mediaType": next(iter(MANIFEST_MEDIA_TYPES))}}]}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = httpx.post(
            live.webhook_url,
            json=envelope,
            headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json", **headers},
            timeout=10,
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _all_jobs(redis_conn) == []


def test_redis_down_answers_503_and_nothing_is_marked_queued(
    serve: Callable[[Settings], RecordingServer],
    registry_factory: Callable[..., Any],
    redis_conn: redis.Redis,
    free_port: int,
    tmp_path: Path,
) -> None:
    token = secrets.token_urlsafe(24)
    live = serve(_settings(f"redis://127.0.0.1:{free_port}/0", tmp_path, token))
    registry = registry_factory(notify_url=live.webhook_url, notify_token=token)
    digest = _layout(tmp_path / "layout")

    registry.push_layout(tmp_path / "layout", REPO, "v1")
    _wait_for(lambda: bool(live.manifest_pushes()), "the registry's manifest push notification")

    assert {d.status for d in live.manifest_pushes()} == {503}  # the registry keeps retrying; nothing is lost
    record = live.app.extensions[STORE_EXTENSION].get_record(REPO, digest)
    assert record is not None  # the push is known…
    assert record.job_id is None  # …but no job was claimed, so a redelivery (or the reconciler) queues it
    assert _all_jobs(redis_conn) == []
