"""A real local HTTP webhook receiver for notification tests: records deliveries, fails or redirects on demand."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """Behaviour per path, set by the test; every request is recorded whatever the answer.

    ``/ok`` answers 204, ``/fail-<n>`` answers 503 the first n times then 200, ``/status-<code>`` answers that
    status, ``/slow`` waits ``slow_seconds`` before answering, ``/redirect?to=<url>`` answers 307 to ``url``.
    """

    url: str = ""
    slow_seconds: float = 2.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: BaseWSGIServer | None = None

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        entry = Received(request.path, {k.lower(): v for k, v in request.headers.items()}, request.get_data())
        with self._lock:
            self.received.append(entry)
            seen = sum(1 for r in self.received if r.path == request.path)
        response = self._answer(request, seen)
        return response(environ, start_response)

    def _answer(self, request: Request, seen: int) -> Response:
        path = request.path
        if path.startswith("/fail-"):
            return Response("down", status=503 if seen <= int(path.removeprefix("/fail-")) else 200)
        if path.startswith("/status-"):
            return Response("no", status=int(path.removeprefix("/status-")))
        if path == "/slow":
            time.sleep(self.slow_seconds)
            return Response(status=204)
        if path == "/redirect":
            return Response(status=307, headers={"Location": request.args["to"]})
        return Response(status=204)

    def at(self, path: str) -> list[Received]:
        """What arrived at ``path``."""
        with self._lock:
            return [r for r in self.received if r.path == path]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """A receiver served on 127.0.0.1 with a free port while the block runs."""
    made = Receiver()
    server = make_server("127.0.0.1", 0, made.app, threaded=True)
    made.url = f"http://127.0.0.1:{server.server_port}"
    made._server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        server.shutdown()
        thread.join(timeout=5)
