"""Unit tests of scripts/run_stack.py (``make run``): addresses, persisted secrets, the plan, busy ports, sessions."""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.registry import free_port

ROOT = Path(__file__).resolve().parents[2]


def load_run_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_stack", ROOT / "scripts" / "run_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_stack"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


rs = load_run_stack()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:8080", "127.0.0.1", 8080), ("[::1]:5000", "::1", 5000), ("localhost", "localhost", 80),
     (":9000", "127.0.0.1", 9000)],
)  # fmt: skip
def test_hostport_parse(text: str, host: str, port: int) -> None:
    assert rs.HostPort.parse(text, default_port=80) == rs.HostPort(host, port)


@pytest.mark.parametrize("text", ["127.0.0.1:99999", "127.0.0.1:http", "127.0.0.1:0"])
def test_hostport_parse_refuses_nonsense(text: str) -> None:
    with pytest.raises(rs.StackError):
        rs.HostPort.parse(text, default_port=80)


def test_wildcard_bind_is_browsed_over_loopback() -> None:
    assert rs.HostPort("0.0.0.0", 8080).browsable == "127.0.0.1:8080"
    assert rs.HostPort("::1", 8080).browsable == "[::1]:8080"
    assert rs.HostPort("10.1.2.3", 80).is_local is False


def test_secrets_are_generated_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tollgate.env"
    first = rs.load_or_create_secrets(path)
    assert set(first) == {"TOLLGATE_WEBHOOK_TOKEN", "TOLLGATE_SECRET_KEY"}
    assert all(len(value) >= 32 for value in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rs.load_or_create_secrets(path) == first


def test_a_missing_secret_is_added_without_touching_the_other(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.env"
    path.write_text("TOLLGATE_WEBHOOK_TOKEN=keep-me\n")
    path.chmod(0o644)
    values = rs.load_or_create_secrets(path)
    assert values["TOLLGATE_WEBHOOK_TOKEN"] == "keep-me"
    assert values["TOLLGATE_SECRET_KEY"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "keep-me" in path.read_text()


def base_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "TOLLGATE_HOME": str(tmp_path),
        "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "TOLLGATE_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
    }


def test_plan_environment_wins_over_the_persisted_file(tmp_path: Path, redis_url: str) -> None:
    env = base_env(tmp_path, redis_url) | {"TOLLGATE_WEBHOOK_TOKEN": "from-the-environment"}
    plan = rs.plan_stack(env)
    assert plan.env["TOLLGATE_WEBHOOK_TOKEN"] == "from-the-environment"
    assert (
        plan.env["TOLLGATE_SECRET_KEY"] == rs.load_or_create_secrets(tmp_path / "tollgate.env")["TOLLGATE_SECRET_KEY"]
    )
    assert plan.env["TOLLGATE_PUBLIC_URL"] == f"http://{env['TOLLGATE_HTTP_ADDR']}"
    assert plan.env["TOLLGATE_DATABASE_URL"] == f"sqlite:///{tmp_path / 'tollgate.db'}"
    assert plan.redis_addr is None  # Redis answers: use it, start none
    assert plan.registry is not None and plan.registry.port == int(env["TOLLGATE_REGISTRY_URL"].rsplit(":", 1)[1])


def test_plan_starts_redis_only_when_none_answers(tmp_path: Path) -> None:
    port = free_port()
    plan = rs.plan_stack(base_env(tmp_path, f"redis://127.0.0.1:{port}/0"))
    assert plan.redis_addr == rs.HostPort("127.0.0.1", port)


def test_plan_refuses_an_unreachable_remote_redis(tmp_path: Path) -> None:
    with pytest.raises(rs.StackError, match="TOLLGATE_REDIS_URL"):
        rs.plan_stack(base_env(tmp_path, "redis://192.0.2.1:6379/0"))  # TEST-NET: never answers


def test_plan_leaves_an_external_registry_alone(tmp_path: Path, redis_url: str) -> None:
    env = base_env(tmp_path, redis_url) | {"TOLLGATE_REGISTRY_URL": "https://registry.example.com"}
    assert rs.plan_stack(env).registry is None


def test_plan_reports_bad_settings_as_a_stack_error(tmp_path: Path, redis_url: str) -> None:
    with pytest.raises(rs.StackError, match="TOLLGATE_NO_SUCH_THING"):
        rs.plan_stack(base_env(tmp_path, redis_url) | {"TOLLGATE_NO_SUCH_THING": "1"})


@pytest.mark.parametrize(("which", "variable"), [("web", "TOLLGATE_HTTP_ADDR"), ("registry", "TOLLGATE_REGISTRY_URL")])
def test_busy_port_names_the_variable_that_moves_it(tmp_path: Path, redis_url: str, which: str, variable: str) -> None:
    plan = rs.plan_stack(base_env(tmp_path, redis_url))
    addr = plan.web if which == "web" else plan.registry
    with socket.socket() as squatter:
        squatter.bind((addr.host, addr.port))
        squatter.listen()
        with pytest.raises(rs.StackError) as info:
            rs.check_ports(plan)
    message = str(info.value)
    assert f"port {addr.port}" in message and which in message and variable in message


def test_free_ports_pass(tmp_path: Path, redis_url: str) -> None:
    rs.check_ports(rs.plan_stack(base_env(tmp_path, redis_url)))


def test_session_members_include_processes_that_left_the_group() -> None:
    """An rq work horse calls setpgrp; it must still be found (and so stopped) through the session."""
    horse = "import os, time; os.setpgrp(); time.sleep(60)"
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {horse!r}]); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        members: list[int] = []
        for _ in range(100):
            members = rs.session_members(leader.pid)
            if len(members) == 2:
                break
            time.sleep(0.05)
        assert leader.pid in members and len(members) == 2
    finally:
        for pid in rs.session_members(leader.pid):
            os.kill(pid, 9)
        leader.wait()
    for _ in range(100):  # a killed process leaves /proc (or turns zombie) shortly after the signal
        if not rs.session_members(leader.pid):
            break
        time.sleep(0.05)
    assert rs.session_members(leader.pid) == []
