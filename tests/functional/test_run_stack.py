"""``make run`` for real: scripts/run_stack.py starts Redis, registry, web and worker, a push reaches Tollgate,
and SIGINT/SIGTERM stop exactly what was started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.oci import tar_layer, write_image_layout
from tests.support.registry import free_port

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 120.0  # seconds for the whole stack to print its banner on a loaded machine
BANNER = "Tollgate is running."


@dataclass
class RunningStack:
    """run_stack.py as a child process, its console output collected line by line."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread = field(default_factory=threading.Thread)

    @property
    def web(self) -> str:
        return f"http://{self.env['TOLLGATE_HTTP_ADDR']}"

    @property
    def registry(self) -> str:
        return self.env["TOLLGATE_REGISTRY_URL"]

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            if self.process.poll() is not None:
                time.sleep(0.5)  # let the reader drain the last lines
                pytest.fail(f"run_stack exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {needle!r} after {timeout}s:\n{self.output()}")
            time.sleep(0.1)

    def children(self) -> list[int]:
        """PIDs of the processes run_stack started (each leads its own session)."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(entry.name))
        return found

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=60)


def session_alive(sid: int) -> bool:
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            return True
    return False


def start_stack(tmp_path: Path, redis_url: str, **overrides: str) -> RunningStack:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLGATE_")}
    env |= {
        "TOLLGATE_HOME": str(tmp_path / "var"),
        "TOLLGATE_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "TOLLGATE_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
        "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_RECONCILE_INTERVAL": "0",
        "TOLLGATE_REGISTRY_USE_DOCKER_CONFIG": "false",
        **overrides,
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_stack.py")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = RunningStack(process, env)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.lines.append(line.rstrip("\n"))

    stack.reader = threading.Thread(target=read, daemon=True)
    stack.reader.start()
    return stack


@pytest.fixture
def own_redis_url() -> str:
    """A Redis URL on a port where nothing listens, so run_stack has to start its own."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def stack_with_own_redis(tmp_path: Path, own_redis_url: str) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path, own_redis_url)
    yield stack
    if stack.process.poll() is None:
        stack.stop(signal.SIGTERM)


def push_small_image(tmp_path: Path, registry: str, repository: str, tag: str) -> str:
    digest = write_image_layout(tmp_path / "layout", [tar_layer({"etc/hello": b"hello from make run\n"})])
    host = registry.split("://", 1)[1]
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:latest",
         f"docker://{host}/{repository}:{tag}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return digest


def test_make_run_starts_everything_a_push_is_noticed_and_sigint_stops_it_all(
    tmp_path: Path, stack_with_own_redis: RunningStack, own_redis_url: str
) -> None:
    stack = stack_with_own_redis
    stack.wait_for_line(BANNER, READY_TIMEOUT)
    assert "starting redis-server" in stack.output()

    assert httpx.get(f"{stack.web}/api/v1/health", timeout=5).status_code == 200
    assert httpx.get(f"{stack.registry}/v2/", timeout=5).status_code == 200
    host = stack.registry.split("://", 1)[1]
    assert f"docker://{host}/demo/alpine:3.20" in stack.output()  # the copy-paste push example

    # The registry was configured to notify the web app with the persisted token: a push becomes a record.
    digest = push_small_image(tmp_path, stack.registry, "demo/hello", "1")
    record: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = httpx.get(f"{stack.web}/api/v1/images/demo/hello:1", timeout=5)
        if response.status_code == 200:
            record = response.json()
            break
        time.sleep(0.2)
    assert record.get("digest") == digest, stack.output()

    state = tmp_path / "var"
    secrets_file = state / "tollgate.env"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    token = next(line for line in secrets_file.read_text().splitlines() if line.startswith("TOLLGATE_WEBHOOK_TOKEN="))
    token_value = token.partition("=")[2]
    assert token_value not in stack.output(), "the webhook token leaked to the console"
    assert token_value not in (state / "log" / "registry.log").read_text(), "the webhook token leaked to the log"
    for name in ("redis", "migrate", "registry", "web", "worker"):
        assert (state / "log" / f"{name}.log").exists()

    children = stack.children()
    assert len(children) == 4  # redis, registry, web, worker (migrate has finished)
    assert stack.stop(signal.SIGINT) == 0
    assert not [pid for pid in children if session_alive(pid)], "something run_stack started is still running"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(own_redis_url, socket_connect_timeout=1).ping()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.web}/api/v1/health", timeout=2)


def test_make_run_uses_and_leaves_a_running_redis_and_stops_on_sigterm(tmp_path: Path, redis_url: str) -> None:
    stack = start_stack(tmp_path, redis_url)
    try:
        stack.wait_for_line(BANNER, READY_TIMEOUT)
        assert "using the Redis that answers" in stack.output()
        children = stack.children()
        assert len(children) == 3  # registry, web, worker
        assert stack.stop(signal.SIGTERM) == 0
        assert not [pid for pid in children if session_alive(pid)]
        assert redis.Redis.from_url(redis_url).ping()
    finally:
        if stack.process.poll() is None:
            stack.stop(signal.SIGKILL)


def test_make_run_refuses_a_busy_web_port_and_starts_nothing(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = start_stack(tmp_path, redis_url, TOLLGATE_HTTP_ADDR=f"127.0.0.1:{port}")
        code = stack.process.wait(timeout=60)
    stack.reader.join(timeout=10)
    assert code == 1
    assert f"port {port}" in stack.output() and "TOLLGATE_HTTP_ADDR" in stack.output()
    assert not (tmp_path / "var" / "log").exists(), "nothing may start when a port is taken"
