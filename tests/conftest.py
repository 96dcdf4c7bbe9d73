"""Shared fixtures: a fresh repository per test, on every backend this run can reach.

The embedded backends (SQLite + fakeredis) always run, and the store contract (every test
that takes ``store``) also runs on the in-memory twin. When ``M11_TEST_DATABASE_URL`` or
``M11_TEST_REDIS_URL`` is set (``.ci/run`` sets both), the same tests also run against the
real PostgreSQL / Redis, and an unreachable service is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest

from m11_tenant.cache import ConfigCache, make_redis_client
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.store import open_store

REAL_DATABASE_URL = os.environ.get("M11_TEST_DATABASE_URL")
REAL_REDIS_URL = os.environ.get("M11_TEST_REDIS_URL")


class FixedClock:
    """A clock tests move by hand, so stored times are predictable."""

    def __init__(self, start: datetime = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def tenant_id() -> str:
    """A tenant id no other test uses (the course's isolation advice)."""
    return f"t-{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``services`` run only when both service URLs are set (``.ci/run``);
    tests marked ``redis_server`` (they start private Redis servers) only when Debian's
    ``redis-server`` is on PATH.

    They are deselected, not skipped, on a laptop without services; with
    ``M11_REQUIRE_SERVICES`` set, a missing URL or binary stops the run instead.
    """
    missing = [] if REAL_DATABASE_URL and REAL_REDIS_URL else ["services"]
    if not shutil.which("redis-server"):
        missing.append("redis_server")
    if not missing:
        return
    if os.environ.get("M11_REQUIRE_SERVICES"):
        raise pytest.UsageError("M11_REQUIRE_SERVICES is set but M11_TEST_DATABASE_URL or "
                                "M11_TEST_REDIS_URL is not set, or redis-server is not on "
                                "PATH: set both (see .ci/run) and install redis-server")
    kept = [item for item in items
            if not any(item.get_closest_marker(marker) for marker in missing)]
    if "redis_server" in missing:
        print("note: redis-server is not on PATH; the region process tests are deselected")
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


DATABASES = ["sqlite"] + (["postgresql"] if REAL_DATABASE_URL else [])
#: The store contract runs on these: the in-memory twin and every database.
STORES = ["memory", *DATABASES]
CACHES = ["fakeredis"] + (["redis"] if REAL_REDIS_URL else [])


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose tables live in a fresh schema of their own, dropped afterwards.

    Test runs share one database, so counts and listings are only exact per schema.
    """
    import psycopg

    name = f"m11_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def backend_url(backend: str, tmp_path) -> Iterator[str]:
    """A fresh, empty store of ``backend`` (``memory``, ``sqlite`` or ``postgresql``)."""
    if backend == "memory":
        yield "memory://test"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tenants.db'}"
    else:
        with postgres_schema(REAL_DATABASE_URL) as url:  # type: ignore[arg-type]
            yield url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database that outlives its store objects (reopen it, share it with a process)."""
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str, clock: FixedClock) -> Iterator:
    """The store contract's subject: the in-memory twin, SQLite, and PostgreSQL if set."""
    s = open_store(store_url, clock=clock)
    yield s
    s.close()


@pytest.fixture
def database_store(database_url: str, clock: FixedClock) -> Iterator:
    s = open_store(database_url, clock=clock)
    yield s
    s.close()


@pytest.fixture(params=CACHES)
def redis_client(request: pytest.FixtureRequest):
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client = make_redis_client(REAL_REDIS_URL)
    client.ping()  # unreachable in CI -> the test errors out instead of skipping
    return client


@pytest.fixture
def cache(redis_client) -> ConfigCache:
    # A per-test key prefix keeps tests sharing one real Redis from seeing each other.
    return ConfigCache(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def repo(database_store, cache) -> TenantConfigRepository:
    return TenantConfigRepository(database_store, cache)


@pytest.fixture
def sqlite_repo(tmp_path, clock) -> Iterator[TenantConfigRepository]:
    """The embedded default only: for tests about SQLite itself or about the cache layer."""
    store = open_store(f"sqlite:///{tmp_path / 'only.db'}", clock=clock)
    cache = ConfigCache(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    r = TenantConfigRepository(store, cache)
    yield r
    r.close()
