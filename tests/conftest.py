"""Shared pytest fixtures: real Redis and PostgreSQL connections, settings, and the support plugins."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.services",
    "tests.support.storage",
    "tests.support.intake",
    "tests.support.stack",
    "tests.support.registry",
    "tests.support.sigstore",
    "tests.support.browser",
]
