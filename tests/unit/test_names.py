"""Look-alike repository names: imitations are findings, ordinary and trusted names are not."""

from __future__ import annotations

import pytest

from workers.domain import Category, Confidence
from workers.policy import rollup
from workers.scanners.names import NameScanner
from workers.settings import Settings

SCANNER = NameScanner(Settings().protected_names, Settings().trusted_namespaces)


@pytest.mark.parametrize(
    "repository",
    [
        "ubuntu1",
        "docker123321/tomcat22",
        "docker123321/mysql",
        "someone/alpineos",
        "zoolu2/alpine2",
        "vibersastra/ubuntu",
        "x/nginxx",
        "c43602f9cc95/openjdk",
        "alpine-latest",
    ],
)
def test_imitations_are_found(repository: str) -> None:
    findings = SCANNER.scan_repository(repository)
    assert len(findings) == 1
    assert findings[0].rule == "names.look-alike"
    assert findings[0].evidence


@pytest.mark.parametrize(
    "repository",
    [
        "library/ubuntu",
        "ubuntu",
        "nginx",
        "team/web",
        "team/payments-api",
        "node-exporter",
        "myorg/ubuntuish-tools",
        "team/redistribute",
    ],
)
def test_ordinary_and_trusted_names_pass(repository: str) -> None:
    assert SCANNER.scan_repository(repository) == []


def test_a_name_alone_is_not_a_verdict() -> None:
    finding = SCANNER.scan_repository("someone/alpineos")[0]
    assert (finding.category, finding.confidence) == (Category.PUA, Confidence.LOW)
    assert rollup([finding])[0].value == "clean"


def test_protected_names_are_configurable() -> None:
    settings = Settings.from_env({"TOLLGATE_PROTECTED_NAMES": "payments", "TOLLGATE_TRUSTED_NAMESPACES": "core"})
    scanner = NameScanner(settings.protected_names, settings.trusted_namespaces)
    assert scanner.scan_repository("evil/payments")
    assert not scanner.scan_repository("core/payments")
    assert not scanner.scan_repository("evil/ubuntu1")
