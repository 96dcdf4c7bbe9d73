"""The quota gate under a real burst: threads firing at a real uvicorn on loopback.

N concurrent queries against Q remaining slots answer exactly min(N, Q) with 200 and the
rest with 429 ``quota_exceeded``, on every database this run can reach, with Redis up and
with Redis down (the gate is the database's, so Redis cannot weaken it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import fakeredis
import pytest
import uvicorn
from api_support import ADMIN, ADMIN_KEY, free_port
from rag_support import FIXED_NOW, catalog, fixture_index, no_providers

from bench.quota_burst import burst
from m11_tenant.app import create_app
from m11_tenant.cache import ConfigCache, make_redis_client
from m11_tenant.rag import RagPipeline, WriteBehindLedger
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import Settings
from m11_tenant.store import open_store

FREE_QUOTA = 100  # data/plans.json, the default plan


@contextmanager
def serving(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


REAL_REDIS_URL = os.environ.get("M11_TEST_REDIS_URL")


@pytest.fixture(params=["fakeredis", *(["redis"] if REAL_REDIS_URL else []), "redis-down"])
def cache_client(request):
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    if request.param == "redis":
        client = make_redis_client(REAL_REDIS_URL)
        client.ping()  # unreachable in CI -> the test errors out instead of skipping
        return client
    # Nothing listens there: every Redis call fails (connection refused), as `serve` sees it.
    return make_redis_client(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("n, left", [(24, 7), (6, 9)])
def test_a_burst_gets_exactly_the_slots_left(database_url, cache_client, tenant_id, n, left):
    store = open_store(database_url)
    repo = TenantConfigRepository(store, ConfigCache(cache_client,
                                                     prefix=f"q-{uuid.uuid4().hex[:8]}:"))
    ledger = WriteBehindLedger(store)
    pipeline = RagPipeline(repo, ledger, index=fixture_index(), clock=lambda: FIXED_NOW,
                           catalog=catalog(), generation="offline", settings=no_providers())
    app = create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY), pipeline=pipeline)
    day = FIXED_NOW.date()
    store.record_usage(tenant_id, day, queries=FREE_QUOTA - left, prompt_tokens=0,
                       completion_tokens=0, cost_usd=0.0)
    try:
        with serving(app) as base:
            outcomes = burst(base, ADMIN, tenant_id, n)
        ledger.close()
        answered = min(n, left)
        assert outcomes == Counter({"200": answered, "429 quota_exceeded": n - answered})
        totals = store.usage_totals(tenant_id, day)
        assert totals.queries_today == FREE_QUOTA - left + answered
        assert totals.tokens_today > 0 and totals.cost_month_usd > 0  # settled, not lost
    finally:
        ledger.close()
        repo.close()
