"""Sanity checks on the set-up files: compose.yaml, Dockerfile, deploy/, requirements, Makefile, CI, README."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import fields
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.registry import free_port
from workers.registry_config import render_registry_config
from workers.settings import _IGNORED_ENV, Settings, UnpackLimits

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "workers", "rules")


def read(name: str) -> str:
    return (ROOT / name).read_text()


# -- compose.yaml -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(read("compose.yaml"))


def interpolate(value: str) -> str:
    """Compose's ``${VAR:?msg}`` / ``${VAR:-default}`` with a placeholder for every unset variable."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m[1], m[2]), value)
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: f"x-{m[1].lower()}", value)


def test_compose_names_the_four_roles_and_a_database(compose: dict) -> None:
    services = compose["services"]
    assert {"registry", "redis", "web", "worker", "postgres"} <= set(services)
    assert services["registry"]["image"] == "registry:2.8"
    assert services["redis"]["image"].startswith("redis:7")
    assert services["web"]["command"] == ["tollgate", "serve"]
    assert services["worker"]["command"] == ["tollgate", "worker"]
    # web and worker are the same image built from the Dockerfile
    assert services["web"]["build"] == services["worker"]["build"] == "."
    assert services["web"]["image"] == services["worker"]["image"]


def test_compose_redis_is_durable_and_never_evicts_jobs(compose: dict) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_compose_every_long_running_service_has_a_healthcheck(compose: dict) -> None:
    dockerfile_has_healthcheck = "HEALTHCHECK" in read("Dockerfile")
    for name, service in compose["services"].items():
        if service.get("restart") == "no":  # one-shot jobs (migrate)
            continue
        check = service.get("healthcheck")
        if check is None:
            assert service.get("build") == "." and dockerfile_has_healthcheck, f"{name} has no healthcheck"
        else:
            assert not check.get("disable"), f"{name} disables its healthcheck"
            assert check["test"][0] == "CMD"


def test_compose_named_volumes_are_declared_and_mounts_exist(compose: dict) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_compose_tollgate_environment_is_valid_settings(compose: dict) -> None:
    """Every TOLLGATE_* the compose file sets is a real setting, and together they pass validation."""
    for name in ("web", "worker", "migrate"):
        env = {key: interpolate(str(value)) for key, value in compose["services"][name]["environment"].items()}
        settings = Settings.from_env(env)
        assert settings.registry_url == "http://registry:5000"
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert settings.webhook_token  # never an unauthenticated webhook


def test_compose_web_and_worker_wait_for_migrations(compose: dict) -> None:
    for name in ("web", "worker"):
        assert compose["services"][name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


# -- deploy/registry/config.yml -----------------------------------------------------------------------------------


def test_deploy_registry_config_matches_the_renderer() -> None:
    """Compose's registry notifies like the `make run` one: same filters, only URL and token differ."""
    deployed = yaml.safe_load(read("deploy/registry/config.yml"))
    rendered = yaml.safe_load(
        render_registry_config(addr=":5000", root="/var/lib/registry", notify_url="http://web:8080/hooks/registry",
                               notify_token="@TOLLGATE_WEBHOOK_TOKEN@")
    )  # fmt: skip
    assert deployed["notifications"] == rendered["notifications"]
    assert deployed["storage"]["delete"] == {"enabled": True}


def test_deploy_registry_config_runs_on_the_real_registry(tmp_path: Path) -> None:
    """The real distribution 2.8 accepts the compose config, with the token substituted as the entrypoint does."""
    token = "tok-" + os.urandom(8).hex()
    config = tmp_path / "config.yml"
    config.write_text(read("deploy/registry/config.yml").replace("@TOLLGATE_WEBHOOK_TOKEN@", token))
    port = free_port()
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_DEBUG_ADDR": f"127.0.0.1:{free_port()}",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"),
    }
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)], env=env, stdout=out, stderr=out)
    try:
        status = None
        for _ in range(100):
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        assert status == 200, log.read_text()
        text = log.read_text()
        assert "configuring endpoint tollgate (http://web:8080/hooks/registry)" in text
        assert f"Authorization:[Bearer {token}]" in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- Dockerfile and .dockerignore ---------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages: list[list[tuple[str, str]]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_is_multi_stage_on_slim_bookworm() -> None:
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2
    args = dict(a.split("=", 1) for i, a in preamble if i == "ARG")
    runtime_from = stages[-1][0][1].split()[0]
    assert re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], runtime_from) == "python:3.11-slim-bookworm"
    runtime = stages[-1]
    assert any(i == "COPY" and a.startswith("--from=builder") for i, a in runtime)
    assert not any(i == "RUN" and "pip install" in a for i, a in runtime), "the runtime stage must not install"


def test_dockerfile_ends_as_non_root_and_serves_with_a_healthcheck() -> None:
    runtime = dockerfile_stages()[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user in {"tollgate", "10001"}
    last_user_at = max(n for n, (i, _) in enumerate(runtime) if i == "USER")
    assert all(i != "RUN" for i, _ in runtime[last_user_at:]), "nothing runs as root after USER"
    assert ("EXPOSE", "8080") in runtime
    healthcheck = next(a for i, a in runtime if i == "HEALTHCHECK")
    assert "/api/v1/health" in healthcheck
    cmd = next(a for i, a in reversed(runtime) if i == "CMD")
    assert ast.literal_eval(cmd) == ["tollgate", "serve"]
    env = " ".join(a for i, a in runtime if i == "ENV")
    assert "HOME=/var/lib/tollgate" in env and "XDG_CACHE_HOME=" in env
    assert "uid 10001" in next(a for i, a in runtime if i == "RUN").replace("--uid", "uid")


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = [line.strip() for line in read(".dockerignore").splitlines() if line.strip() and line[0] != "#"]
    for stage in dockerfile_stages()[1:]:
        for instruction, args in stage:
            if instruction != "COPY" or args.startswith("--from"):
                continue
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") not in ignored, f"COPY {source} is excluded by .dockerignore"


# -- packaging: the image installs the wheel, so the wheel must carry every data file ----------------------------

# Files the running service never reads (they serve `alembic revision` on a developer's machine).
DEV_ONLY_DATA = {"workers/migrations/script.py.mako"}


def test_wheel_carries_every_data_file_of_the_packages(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    expected = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            rel = path.relative_to(ROOT).as_posix()
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(path.read_bytes())
            if path.suffix not in {".py", ".pyc"} and rel not in DEV_ONLY_DATA:
                expected.add(rel)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=src, check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("tollgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert expected - names == set(), "data files missing from the wheel (pyproject package-data)"
    assert "workers/migrations/versions/0001_initial.py" in names


# -- requirements -------------------------------------------------------------------------------------------------


def pins(name: str) -> dict[str, str]:
    result = {}
    for line in read(name).splitlines():
        if line and not line.startswith("#"):
            match = re.fullmatch(r"([a-z0-9][a-z0-9._-]*)==([0-9][\w.+!-]*)", line)
            assert match, f"{name}: not a name==version pin: {line!r}"
            result[match[1]] = match[2]
    return result


def third_party_imports(*folders: str) -> set[str]:
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            if "samples" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in {*PACKAGES, "tests", "bench"}}


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    mapping = metadata.packages_distributions()
    return {m: {re.sub(r"[-_.]+", "-", d).lower() for d in mapping.get(m, [])} for m in modules}


def test_requirements_are_pinned_and_cover_every_app_import() -> None:
    app = pins("requirements.txt")
    for module, dists in distributions_of(third_party_imports(*PACKAGES)).items():
        assert dists & set(app), f"{module} is imported by the app but no distribution of it is in requirements.txt"


def test_dev_requirements_cover_test_imports_and_do_not_repeat_app_pins() -> None:
    app, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert not set(app) & set(dev)
    for module, dists in distributions_of(third_party_imports("tests", "bench", "scripts")).items():
        assert dists & (set(app) | set(dev)), f"{module} is imported by tests/tools but not pinned"
    assert {"pytest", "pytest-xdist", "ruff", "mypy"} <= set(dev)


def test_requirements_match_the_venv_that_runs_the_tests() -> None:
    """The pins are what the suite runs against; a drift means requirements*.txt were not regenerated."""
    for name, version in (pins("requirements.txt") | pins("requirements-dev.txt")).items():
        assert metadata.version(name) == version, f"{name}: pinned {version}, installed {metadata.version(name)}"


# -- Makefile, CI, scripts ----------------------------------------------------------------------------------------


def test_makefile_has_the_contract_targets() -> None:
    targets = set(re.findall(r"^([a-z-]+):", read("Makefile"), re.M))
    assert {"run", "test", "lint", "bench", "bootstrap"} <= targets
    assert "no tests were collected" in read("Makefile")  # pytest exit 5 is turned into a failure


def test_ci_entry_point_runs_make_test() -> None:
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    assert "set -euo pipefail" in text
    assert text.rstrip().splitlines()[-1] == "make test"


@pytest.mark.parametrize("script", ["scripts/bootstrap.sh", "scripts/test_services.sh", ".ci/run"])
def test_shell_scripts_parse(script: str) -> None:
    assert os.access(ROOT / script, os.X_OK)
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)


# -- README -------------------------------------------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = read("README.md")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match[1]


def test_readme_documents_exactly_two_setup_commands() -> None:
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", readme_section("Set up"), re.S)
    assert blocks, "no code block in 'Set up'"
    commands = [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands == ["make run", "make test"]


def test_readme_documents_every_setting_and_no_invented_one() -> None:
    section = readme_section("Configuration")
    expected = {f"TOLLGATE_{f.name.upper()}" for f in fields(Settings) if f.name != "limits"}
    expected |= {f"TOLLGATE_LIMIT_{f.name.upper()}" for f in fields(UnpackLimits)}
    documented = set(re.findall(r"`(TOLLGATE_[A-Z0-9_]+)`", section))
    assert expected - documented == set(), "settings missing from the README table"
    mentioned = set(re.findall(r"\bTOLLGATE_[A-Z0-9_]*[A-Z0-9]\b", read("README.md")))
    from tests.support.browser import ARTIFACTS_ENV, CHROMIUM_ENV
    from tests.support.debian_roots import CACHE_ENV

    known = expected | _IGNORED_ENV | {"TOLLGATE_TEST_PG_URL", "TOLLGATE_TEST_REDIS_URL", CACHE_ENV}
    known |= {CHROMIUM_ENV, ARTIFACTS_ENV}
    assert mentioned - known == set(), "README mentions variables nothing reads"


def test_readme_states_the_scan_exit_codes() -> None:
    from workers import cli

    text = read("README.md")
    for code, meaning in ((cli.EXIT_ALLOWED, "allow"), (cli.EXIT_BLOCKED, "block"), (cli.EXIT_ERROR, "error")):
        assert re.search(rf"`{code}`[^\n]*{meaning}", text, re.I), f"exit code {code} ({meaning}) not documented"
