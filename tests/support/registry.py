"""pytest plugin: start the real Debian ``docker-registry`` (distribution 2.8) on a free port, push with skopeo."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from workers.registry_config import render_registry_config

REGISTRY_BIN = os.environ.get("TOLLGATE_TEST_REGISTRY_BIN", "/usr/bin/docker-registry")
SKOPEO_BIN = os.environ.get("TOLLGATE_TEST_SKOPEO_BIN", "/usr/bin/skopeo")
READY_TIMEOUT = 20.0  # seconds for the registry to answer /v2/ after start
PUSH_TIMEOUT = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """Write an htpasswd file with bcrypt hashes (the only kind distribution's htpasswd backend accepts)."""
    import bcrypt

    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class RunningRegistry:
    """A live registry process and where its storage, config and log are."""

    url: str
    host: str
    root: Path
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    username: str | None = None
    password: str | None = None
    _work: Path = field(default=Path("."), repr=False)

    def push_layout(
        self,
        layout_dir: Path,
        repository: str,
        tag: str,
        *,
        all_platforms: bool = True,
        ref_name: str | None = None,
    ) -> None:
        """Copy an OCI layout into ``repository:tag`` with skopeo, keeping every digest as written."""
        source = f"oci:{layout_dir}" + (f":{ref_name}" if ref_name else "")
        command = [SKOPEO_BIN, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
        if all_platforms:
            command.append("--all")
        if self.username is not None:
            command.append(f"--dest-creds={self.username}:{self.password or ''}")
        else:
            command.append("--dest-no-creds")
        command += [source, f"docker://{self.host}/{repository}:{tag}"]
        env = {**os.environ, "HOME": str(self._work), "REGISTRY_AUTH_FILE": str(self._work / "auth.json")}
        result = subprocess.run(command, capture_output=True, timeout=PUSH_TIMEOUT, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"skopeo copy to {self.host}/{repository}:{tag} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )

    def log(self) -> str:
        """The registry's log so far (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) if it still runs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start the same registry (same port, config and storage); queued notifications are lost."""
        self.stop()
        self.process = _spawn(self.config_path, self.log_path)
        _wait_ready(self.url, self.process, self.log_path)


def _spawn(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    # REGISTRY_* variables override the config file in distribution; never inherit stray ones.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited with {process.returncode}: {log_path.read_text(errors='replace')}")
        try:
            response = httpx.get(f"{url}/v2/", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if response.status_code in (200, 401):
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"registry at {url} did not answer /v2/ within {READY_TIMEOUT}s")


def start_registry(
    tmp_dir: Path,
    *,
    notify_url: str | None = None,
    notify_token: str | None = None,
    htpasswd: Path | None = None,
    credentials: tuple[str, str] | None = None,
) -> RunningRegistry:
    """Start a registry storing under ``tmp_dir`` on a free 127.0.0.1 port; return once ``/v2/`` answers.

    ``credentials`` (user, password) are what ``push_layout`` uses when ``htpasswd`` protects the registry.
    """
    if not Path(REGISTRY_BIN).exists():
        raise RuntimeError(f"{REGISTRY_BIN} is missing: apt-get install docker-registry")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    root = tmp_dir / "storage"
    root.mkdir(exist_ok=True)
    config_path = tmp_dir / "config.yml"
    log_path = tmp_dir / "registry.log"
    last_error: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        config_path.write_text(
            render_registry_config(
                addr=f"127.0.0.1:{port}",
                root=root,
                notify_url=notify_url,
                notify_token=notify_token,
                htpasswd=htpasswd,
            )
        )
        config_path.chmod(0o600)
        process = _spawn(config_path, log_path)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log_path)
        except RuntimeError as exc:
            last_error = exc
            continue
        user, password = credentials if credentials else (None, None)
        return RunningRegistry(
            url=url,
            host=f"127.0.0.1:{port}",
            root=root,
            config_path=config_path,
            process=process,
            log_path=log_path,
            username=user,
            password=password,
            _work=tmp_dir,
        )
    raise RuntimeError(f"could not start the registry: {last_error}")


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningRegistry]]:
    """``registry_factory(notify_url=…, notify_token=…, htpasswd=…)`` starts a fresh registry; all stop after."""
    if shutil.which(SKOPEO_BIN) is None:
        pytest.fail(f"{SKOPEO_BIN} is missing: apt-get install skopeo")
    started: list[RunningRegistry] = []

    def start(
        *,
        notify_url: str | None = None,
        notify_token: str | None = None,
        htpasswd: Path | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> RunningRegistry:
        running = start_registry(
            tmp_path_factory.mktemp("registry"),
            notify_url=notify_url,
            notify_token=notify_token,
            htpasswd=htpasswd,
            credentials=credentials,
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., RunningRegistry]) -> RunningRegistry:
    """A fresh, empty registry without notifications or auth, stopped after the test."""
    return registry_factory()
