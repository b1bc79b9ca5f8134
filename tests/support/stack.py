"""Fixtures that run the whole Tollgate stack for functional tests: real registry, web app, Redis, worker."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from workers.settings import Settings


@dataclass
class LiveApp:
    """The Flask app served over real HTTP on a free port."""

    url: str
    settings: Settings
    server: BaseWSGIServer

    @property
    def webhook_url(self) -> str:
        """Where the registry must send its notifications."""
        return f"{self.url}/hooks/registry"


def serve_app(settings: Settings) -> tuple[LiveApp, threading.Thread]:
    """Serve ``create_app(settings)`` on 127.0.0.1 with a free port in a daemon thread."""
    from service import create_app

    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveApp(url=f"http://127.0.0.1:{server.server_port}", settings=settings, server=server), thread


@dataclass
class Stack:
    """A running registry wired to a live Tollgate app, with helpers to push, work and read records."""

    app: LiveApp
    registry: Any  # tests.support.registry.RunningRegistry
    settings: Settings
    env: dict[str, str]

    def push(self, layout: Path, repository: str, tag: str) -> None:
        """Push an OCI layout to the registry with skopeo (every platform)."""
        self.registry.push_layout(layout, repository, tag)

    def record(self, repository: str, ref: str) -> httpx.Response:
        """GET the API record by ``@digest`` or ``:tag`` reference suffix."""
        return httpx.get(f"{self.app.url}/api/v1/images/{repository}{ref}", timeout=10)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        """Poll ``predicate`` until true; fail the test with ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout}s waiting for {what}")

    def wait_queued(self, repository: str, tag: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the registry's notification made the tag known to Tollgate; return the record."""
        found: dict[str, Any] = {}

        def known() -> bool:
            response = self.record(repository, f":{tag}")
            if response.status_code == 200:
                found.update(response.json())
                return True
            return False

        self.wait_for(known, timeout, f"notification for {repository}:{tag}")
        return found

    def run_worker(self) -> None:
        """Drain the queues with a real rq worker in this process (SimpleWorker, burst)."""
        from workers.queue import run_worker

        run_worker(self.settings, burst=True, with_scheduler=False, simple=True)


@pytest.fixture
def stack(
    tmp_path: Path, redis_url: str, registry_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """Registry (notifications → app) + app + Redis + SQLite store; the worker runs on demand."""
    token = secrets.token_urlsafe(24)
    env = {
        "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'tollgate.db'}",
        "TOLLGATE_WEBHOOK_TOKEN": token,
        "TOLLGATE_SECRET_KEY": secrets.token_hex(16),
        "TOLLGATE_RECONCILE_INTERVAL": "0",
        "TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "false",
        "TOLLGATE_SIGNING_KEY": str(tmp_path / "tollgate-signing-key.pem"),  # never the checkout's ./var
    }
    # The registry must know the app's URL and the app must know the registry's: start the app first
    # with a placeholder registry URL, then point its settings at the real one before any job runs.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    live, _thread = serve_app(settings)
    registry = registry_factory(notify_url=live.webhook_url, notify_token=token)
    monkeypatch.setenv("TOLLGATE_REGISTRY_URL", registry.url)
    env["TOLLGATE_REGISTRY_URL"] = registry.url
    settings = Settings.from_env()
    live.settings = settings
    try:
        yield Stack(app=live, registry=registry, settings=settings, env=env)
    finally:
        live.server.shutdown()
