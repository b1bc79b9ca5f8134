"""Fixtures for webhook and queue tests: a port where nothing listens."""

from __future__ import annotations

import socket

import pytest


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def free_port() -> int:
    """A port with no listener, for pointing Redis or PostgreSQL URLs at nothing."""
    return unused_port()
