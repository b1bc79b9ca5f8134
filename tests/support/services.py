"""Fixtures for the real backing services: a private Redis database and PostgreSQL/SQLite URLs per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PG_ADMIN_URL = os.environ.get("TOLLGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _claim_redis_db() -> int:
    """Pick a Redis database (4..15) no other test process holds, like rq's own test suite does."""
    base = redis.Redis.from_url(REDIS_URL + "/0")
    for db in range(4, 16):
        if base.set(f"tollgate-test-lock:{db}", os.getpid(), nx=True, ex=3600):
            return db
    raise RuntimeError("no free Redis test database (4..15)")


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    """A Redis database number owned by this test session."""
    db = _claim_redis_db()
    yield db
    redis.Redis.from_url(REDIS_URL + "/0").delete(f"tollgate-test-lock:{db}")


@pytest.fixture
def redis_url(redis_db: int) -> Iterator[str]:
    """URL of an empty Redis database, flushed before and after the test."""
    url = f"{REDIS_URL}/{redis_db}"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A connection to the test's own empty Redis database."""
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; its SQLAlchemy URL. Dropped afterwards."""
    import sqlalchemy as sa

    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend: a temporary SQLite file, and a clean PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tollgate.db'}"
    import sqlalchemy as sa

    url: str = request.getfixturevalue("pg_database")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # each test starts from an empty schema
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url
