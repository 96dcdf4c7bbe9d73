"""The near cache, pub/sub invalidation, PostgreSQL specifics, and real service outages.

The near-cache tests run on every backend the run can reach (SQLite + fakeredis always).
Tests marked ``services`` need real processes (``.ci/run``): a second Python process, our
own ``redis-server`` killed and restarted, a TCP proxy in front of PostgreSQL cut and
restored. Every wait is "until this is true, at most N seconds", never a timing assertion.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import fakeredis
import pytest
import redis
from api_support import free_port

from m11_tenant import open_repository
from m11_tenant.cache import ConfigCache, InvalidationListener, NearCache, make_redis_client
from m11_tenant.errors import StoreUnavailableError
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import load_settings
from m11_tenant.store import Change, ConfigStore, open_store
from m11_tenant.store.migrations import POSTGRES_MIGRATIONS
from tests.conftest import REAL_DATABASE_URL, REAL_REDIS_URL, postgres_schema

LONG_TTL = 3600  # so that only an invalidation can explain a fresh read


def eventually(check: Callable[[], object], timeout: float = 15.0) -> bool:
    """Poll ``check`` until it is truthy; False if it never was within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return bool(check())


def near_repo(store: ConfigStore, client: redis.Redis, prefix: str) -> TenantConfigRepository:
    """A repository with a near cache whose listener is subscribed (as open_repository)."""
    cache = ConfigCache(client, ttl=LONG_TTL, prefix=prefix)
    near = NearCache(1000, ttl=LONG_TTL)
    listener = InvalidationListener(client, cache.channel, near, heartbeat=1.0).start()
    assert listener.ready.wait(15), listener.status
    return TenantConfigRepository(store, cache, near=near, listener=listener)


# ---------------------------------------------------------------- the near cache alone

class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def on(near: NearCache) -> NearCache:
    near.enable()
    return near


def test_near_cache_is_a_bounded_lru():
    near = on(NearCache(max_entries=2))
    for name in ("a", "b"):
        assert near.put(name, name.upper(), 1, near.token())
    assert near.get("a") == "A"  # "b" is now the least recently used
    near.put("c", "C", 1, near.token())
    assert (near.get("a"), near.get("b"), near.get("c")) == ("A", None, "C")
    assert len(near) == 2 and near.evictions == 1


def test_near_cache_ttl_is_the_backstop():
    ticks = Ticks()
    near = on(NearCache(ttl=10, clock=ticks))
    near.put("a", "A", 1, near.token())
    ticks.now += 9.9
    assert near.get("a") == "A"
    ticks.now += 0.1
    assert near.get("a") is None and len(near) == 0


def test_near_cache_serves_nothing_while_off():
    near = NearCache()
    assert not near.put("a", "A", 1, near.token())
    near.enable()
    near.put("a", "A", 1, near.token())
    near.disable()
    assert near.get("a") is None and len(near) == 0
    near.enable()
    assert near.get("a") is None  # it comes back empty


def test_a_value_fetched_before_an_invalidation_is_refused():
    near = on(NearCache())
    token = near.token()
    near.invalidate("a")  # a write landed while the reader was fetching
    assert not near.put("a", "stale", 1, token)
    assert near.put("b", "B", 1, token)  # other tenants are not affected
    assert near.put("a", "fresh", 2, near.token())


def test_a_clear_refuses_every_fetch_in_flight():
    near = on(NearCache())
    token = near.token()
    near.clear()
    assert not near.put("b", "B", 1, token)


def test_an_entry_at_the_announced_version_stays():
    near = on(NearCache())
    near.put("a", "v3", 3, near.token())
    near.invalidate("a", version=3)  # the announcement of the write this copy already has
    assert near.get("a") == "v3"
    near.invalidate("a", version=4)
    assert near.get("a") is None
    near.put("b", "v1", 1, near.token())
    near.invalidate("b")  # a delete: version unknown
    assert near.get("b") is None


def test_a_version_older_than_announced_is_refused():
    near = on(NearCache())
    near.invalidate("a", version=5)
    assert near.newest_version("a") == 5
    assert not near.put("a", "v4", 4, near.token())
    assert near.put("a", "v5", 5, near.token())


@pytest.mark.parametrize("payload", [b"a \xd9\xa3 other", b"a \xff\xfe other", "a \u00b2 other",
                                     "a 99999999999999999999999 other", "a", b"a"])
def test_a_malformed_announcement_still_invalidates_and_never_raises(payload):
    near = on(NearCache())
    near.put("a", "v3", 3, near.token())
    listener = InvalidationListener(fakeredis.FakeRedis(), "chan", near)
    listener._apply(payload)  # what a stray publisher on the channel can send
    assert near.get("a") is None


def test_invalidation_marks_stay_bounded():
    near = on(NearCache(max_entries=10))
    token = near.token()
    for n in range(2000):
        near.invalidate(f"t{n}")
    assert len(near._marks) <= 1024
    assert not near.put("other", "X", 1, token)  # forgetting marks refuses old fetches


def test_near_cache_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        NearCache(max_entries=0)


# ---------------------------------------------------------------- through the repository

@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def nrepo(store, redis_client, prefix) -> Iterator[TenantConfigRepository]:
    repo = near_repo(store, redis_client, prefix)
    yield repo
    repo.listener.stop()


def test_second_read_is_the_same_validated_object_from_the_near_cache(nrepo, tenant_id):
    nrepo.update_config(tenant_id, {"top_k": 8})
    first, second, third = (nrepo.get_record(tenant_id) for _ in range(3))
    assert (first.source, second.source, third.source) == ("database", "near", "near")
    assert second is third and second.config == first.config
    assert second.version == 1 and not second.degraded
    stats = nrepo.get_stats()
    assert stats["sources"] == {"database": 1, "near": 2}
    assert stats["near_cache"]["hits"] == 2
    assert stats["database_read_share"] == pytest.approx(1 / 3, abs=1e-6)


def test_unknown_tenants_are_near_cached_as_defaults(nrepo, tenant_id):
    nrepo.get_record(tenant_id)
    record = nrepo.get_record(tenant_id)
    assert (record.source, record.version) == ("near", 0)
    nrepo.update_config(tenant_id, {"top_k": 2})
    assert nrepo.get_config(tenant_id).top_k == 2


@pytest.mark.parametrize("write", ["merge", "replace", "rollback", "delete"])
def test_every_write_path_is_read_back_at_once_in_the_writing_process(nrepo, tenant_id, write):
    nrepo.update_config(tenant_id, {"top_k": 2})
    nrepo.update_config(tenant_id, {"top_k": 3})
    nrepo.get_record(tenant_id)
    assert nrepo.get_record(tenant_id).source == "near"
    expected = {
        "merge": lambda: nrepo.update_config(tenant_id, {"top_k": 9}) and 9,
        "replace": lambda: nrepo.update_config(tenant_id, {"top_k": 9}, merge=False) and 9,
        "rollback": lambda: nrepo.rollback(tenant_id, 1) and 2,
        "delete": lambda: nrepo.delete_config(tenant_id) or 5,
    }[write]()
    fresh = nrepo.get_record(tenant_id)
    assert fresh.source in {"database", "defaults"}
    assert fresh.config.top_k == expected


def test_a_write_through_another_repository_reaches_this_near_cache(
        database_url, redis_client, prefix, tenant_id):
    """Two repositories = two processes' worth of state: own store, own near cache."""
    # A fake server is shared through its client; a real Redis gets a second connection.
    second_client = (redis_client if isinstance(redis_client, fakeredis.FakeRedis)
                     else make_redis_client(REAL_REDIS_URL))
    reader = near_repo(open_store(database_url), redis_client, prefix)
    writer = near_repo(open_store(database_url), second_client, prefix)
    try:
        writer.update_config(tenant_id, {"top_k": 4})
        assert eventually(lambda: reader.get_record(tenant_id).source == "near")
        writer.update_config(tenant_id, {"top_k": 5})
        # Both TTLs are an hour: only the invalidation can make the reader fresh.
        assert eventually(lambda: reader.get_config(tenant_id).top_k == 5)
        assert reader.near.invalidations >= 1
    finally:
        reader.close()
        writer.close()


def test_an_older_copy_put_back_into_redis_is_not_served(nrepo, tenant_id):
    """A slow reader elsewhere put version 1 back into Redis after version 2 was announced."""
    nrepo.update_config(tenant_id, {"top_k": 1})
    nrepo.get_record(tenant_id)
    stale = nrepo.cache.get(tenant_id)
    nrepo.update_config(tenant_id, {"top_k": 2})
    nrepo.cache.put(tenant_id, stale)
    record = nrepo.get_record(tenant_id)
    assert (record.version, record.config.top_k, record.source) == (2, 2, "database")
    assert nrepo.cache.get(tenant_id)["version"] == 2  # Redis was repaired too


def test_health_reports_the_subscription(nrepo):
    assert nrepo.health() == {"status": "ok", "services": {
        "database": "ok", "cache": "ok", "subscription": "ok"}}
    nrepo.listener.stop()
    health = nrepo.health()
    assert (health["status"], health["services"]["subscription"]) == ("degraded", "stopped")


def test_heartbeat_pings_are_answered_and_keep_the_subscription(redis_client, prefix):
    near = NearCache()
    listener = InvalidationListener(redis_client, f"{prefix}hb", near, heartbeat=0.05,
                                    poll=0.01).start()
    try:
        assert listener.ready.wait(15)
        start = near.clears
        time.sleep(0.5)  # ten heartbeat periods of silence
        assert (listener.status, listener.reconnects, near.clears) == ("ok", 0, start)
    finally:
        listener.stop()


def test_warm_start_loads_every_tenant(store, redis_client, prefix, tenant_id):
    writer = TenantConfigRepository(store, ConfigCache(redis_client, prefix=prefix))
    ids = [f"{tenant_id}-{n:02d}" for n in range(40)]
    for n, tid in enumerate(ids):
        writer.update_config(tid, {"top_k": 1 + n % 20})
    repo = near_repo(store, redis_client, prefix)
    try:
        assert repo.warm_start() == store.count_tenants()
        records = [repo.get_record(tid) for tid in ids]
        assert {r.source for r in records} == {"near"}
        assert [r.config.top_k for r in records] == [1 + n % 20 for n in range(40)]
        assert repo.get_stats()["database_read_share"] == 0.0
    finally:
        repo.listener.stop()


def test_open_repository_builds_the_near_cache_and_can_warm_start(tmp_path, tenant_id):
    url = f"sqlite:///{tmp_path / 'warm.db'}"
    first = open_repository(url, None)
    first.update_config(tenant_id, {"top_k": 6})
    first.close()
    repo = open_repository(url, None, warm_start=True,
                           settings=load_settings(near_cache_size=50, near_cache_ttl=60))
    try:
        assert repo.near.max_entries == 50 and repo.near.ttl == 60
        assert repo.get_record(tenant_id).source == "near"
        assert repo.health()["services"]["subscription"] == "ok"
    finally:
        repo.close()
    assert repo.listener.status == "stopped"
    plain = open_repository(url, "", settings=load_settings(near_cache_size=50))
    assert (plain.near, plain.health()["services"]["subscription"]) == (None, "disabled")
    plain.close()


# ---------------------------------------------------------------- stores

def test_concurrent_first_writes_of_a_new_tenant_lose_nothing(database_url, tenant_id):
    """No row exists yet to lock: the PostgreSQL advisory lock must serialise them."""
    stores = [open_store(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    versions: list[int] = []

    def first_write(store: ConfigStore) -> None:
        barrier.wait()
        record = store.write(tenant_id, lambda cur: {"n": (cur.config["n"] if cur else 0) + 1},
                             Change(actor="racer"))
        versions.append(record.version)

    threads = [threading.Thread(target=first_write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert stores[0].get(tenant_id).config == {"n": 6}
    for s in stores:
        s.close()


def test_tenants_list_in_byte_order_on_every_backend(store, tenant_id):
    """PostgreSQL would sort by its locale ('-' and '_' ignored) without COLLATE "C"."""
    ids = [f"{tenant_id}{suffix}" for suffix in ("_a", "-b", "0", "a", "-a", "_b")]
    for tid in ids:
        store.write(tid, lambda _c: {}, Change())
    assert [t for t in store.list_tenants(limit=100) if t.startswith(tenant_id)] == sorted(ids)


def test_a_postgres_url_to_a_closed_port_fails_clearly():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with pytest.raises(StoreUnavailableError, match="cannot connect to the database"):
        open_store(url)


def test_unknown_database_scheme_is_refused():
    with pytest.raises(ValueError, match="postgresql://"):
        open_store("mysql://x/y")


@pytest.mark.services
def test_postgres_keeps_configs_as_jsonb_and_records_its_migrations(tenant_id):
    import psycopg

    with postgres_schema(REAL_DATABASE_URL) as url:
        store = open_store(url)
        store.write(tenant_id, lambda _c: {"top_k": 3, "branding": {"name": "A"}}, Change())
        assert store.schema_version == POSTGRES_MIGRATIONS[-1][0]
        with psycopg.connect(url) as conn:
            kind = conn.execute("SELECT pg_typeof(config)::text, config->'branding'->>'name' "
                                "FROM tenant_configs WHERE tenant_id = %s",
                                (tenant_id,)).fetchone()
        assert kind == ("jsonb", "A")
        store.close()


@pytest.mark.services
def test_an_error_on_a_live_postgres_connection_fails_only_that_call(tenant_id):
    with postgres_schema(REAL_DATABASE_URL) as url:
        store = open_store(url)
        store.write(tenant_id, lambda _c: {"n": 1}, Change())
        store._rows("SET statement_timeout = 20")
        with pytest.raises(StoreUnavailableError, match="statement timeout"):
            store._rows("SELECT pg_sleep(1)")
        assert store.get(tenant_id).config == {"n": 1}  # no pause, same connection
        store.close()


# ---------------------------------------------------------------- across processes

def _watch(db_url: str, redis_url: str, prefix: str, tenant_id: str, ready, out) -> None:
    repo = near_repo(open_store(db_url), make_redis_client(redis_url), prefix)
    first, second = repo.get_record(tenant_id), repo.get_record(tenant_id)
    ready.put((first.version, second.source))
    deadline = time.monotonic() + 30
    record = second
    while record.version < 2 and time.monotonic() < deadline:
        record = repo.get_record(tenant_id)
    out.put((record.version, record.source, record.config.top_k))
    repo.close()


@pytest.mark.services
def test_a_write_in_one_process_is_served_by_two_others_without_waiting_for_the_ttl(
        database_url, prefix, tenant_id):
    writer = near_repo(open_store(database_url), make_redis_client(REAL_REDIS_URL), prefix)
    writer.update_config(tenant_id, {"top_k": 1})
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    watchers = [ctx.Process(target=_watch, args=(database_url, REAL_REDIS_URL, prefix,
                                                 tenant_id, ready, out)) for _ in range(2)]
    for w in watchers:
        w.start()
    try:
        assert [ready.get(timeout=60) for _ in watchers] == [(1, "near")] * 2
        writer.update_config(tenant_id, {"top_k": 2})
        results = [out.get(timeout=60) for _ in watchers]
    finally:
        for w in watchers:
            w.join(60)
        writer.close()
    # Version 2 was re-read from Redis or the database, not served from a stale near cache.
    assert all(version == 2 and top_k == 2 and source in {"cache", "database"}
               for version, source, top_k in results), results
    assert [w.exitcode for w in watchers] == [0, 0]


# ---------------------------------------------------------------- Redis killed and restarted

class OwnRedis:
    """A redis-server of our own on a free port, files under the test's tmp dir."""

    def __init__(self, directory) -> None:
        self.port, self.dir = free_port(), directory
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (the services tests need it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        assert eventually(lambda: _answers(probe)), "our redis-server did not start"
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.mark.services
def test_redis_killed_mid_run_then_restarted(database_url, own_redis, prefix, tenant_id):
    writer = near_repo(open_store(database_url), make_redis_client(own_redis.url), prefix)
    reader = near_repo(open_store(database_url), make_redis_client(own_redis.url), prefix)
    try:
        writer.update_config(tenant_id, {"top_k": 1})
        # A read racing the write's announcement is not kept; the next one is.
        assert eventually(lambda: reader.get_record(tenant_id).source == "near")

        own_redis.kill()
        assert eventually(lambda: reader.listener.status.startswith("down"))
        assert eventually(lambda: writer.listener.status.startswith("down"))
        assert not reader.near.enabled and len(reader.near) == 0
        # Writes still commit (the database is the truth); nobody serves the old copy.
        assert writer.update_config(tenant_id, {"top_k": 2}).version == 2
        record = reader.get_record(tenant_id)
        assert (record.config.top_k, record.source, record.degraded) == (2, "database", False)
        health = reader.health()
        assert health["status"] == "degraded"
        assert health["services"]["subscription"].startswith("down")
        assert health["services"]["cache"].startswith("down")

        assert writer._stale_in_cache == {tenant_id: 2}  # its announcement could not go out
        own_redis.start()  # same port, empty
        assert eventually(lambda: reader.listener.status == "ok"
                          and writer.listener.status == "ok")
        assert eventually(lambda: not writer._stale_in_cache)  # resent on resubscribing
        assert reader.listener.reconnects >= 1
        assert eventually(lambda: reader.get_record(tenant_id).source == "near")
        assert reader.get_config(tenant_id).top_k == 2
        writer.update_config(tenant_id, {"top_k": 3})
        assert eventually(lambda: reader.get_config(tenant_id).top_k == 3)
        assert eventually(lambda: reader.health()["status"] == "ok")
    finally:
        reader.close()
        writer.close()


# ---------------------------------------------------------------- PostgreSQL unreachable

class TcpProxy:
    """Forwards a local port to PostgreSQL; ``cut()`` drops every connection for real."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def cut(self) -> None:
        assert self._server is not None
        with contextlib.suppress(OSError):  # wakes the blocked accept() so the port closes
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.services
def test_postgres_unreachable_reads_go_on_writes_fail_and_nothing_acknowledged_is_lost(
        prefix, tenant_id):
    target = urlsplit(REAL_DATABASE_URL)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    with postgres_schema(REAL_DATABASE_URL) as url:
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        via_proxy = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
        repo = near_repo(open_store(via_proxy), make_redis_client(REAL_REDIS_URL), prefix)
        hot, cold, unseen = tenant_id, f"{tenant_id}-cold", f"{tenant_id}-new"
        try:
            acknowledged = [repo.update_config(hot, {"top_k": n}).version for n in (1, 2, 3)]
            repo.update_config(cold, {"top_k": 7})
            repo.get_record(hot), repo.get_record(cold)
            repo.cache.invalidate(cold)  # cold: only the 24-hour last-known-good copy left
            repo.near.invalidate(cold)

            def cut_midway(_current):  # the connection dies inside the transaction
                proxy.cut()
                return {"top_k": 50}

            with pytest.raises(StoreUnavailableError, match="a write to the database failed"):
                repo.store.write(hot, cut_midway, Change())
            assert repo.get_record(hot).config.top_k == 3  # the near cache still serves
            cold_record = repo.get_record(cold)
            assert (cold_record.config.top_k, cold_record.source, cold_record.degraded) == (
                7, "last_known_good", True)
            unseen_record = repo.get_record(unseen)
            assert (unseen_record.source, unseen_record.degraded) == ("defaults", True)
            with pytest.raises(StoreUnavailableError, match="was NOT saved"):
                repo.update_config(hot, {"top_k": 99})
            with pytest.raises(StoreUnavailableError, match="was NOT saved"):
                repo.delete_config(cold)
            health = repo.health()
            assert health["status"] == "degraded"
            assert health["services"]["database"].startswith("down: PostgreSQL at 127.0.0.1")

            proxy.start()
            assert eventually(lambda: repo.health()["services"]["database"] == "ok")
            assert acknowledged == [1, 2, 3]
            assert [h.version for h in repo.get_history(hot)] == [3, 2, 1]
            assert repo.store.get(hot).config["top_k"] == 3  # the refused write left no trace
            assert repo.store.get(cold).version == 1
            assert [e.action for e in repo.get_audit_log(hot)] == ["update"] * 3
            assert repo.update_config(hot, {"top_k": 4}).version == 4
            assert repo.get_config(hot).top_k == 4
        finally:
            repo.close()
            proxy.cut()
