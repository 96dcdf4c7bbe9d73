"""How fast a tenant's config resolves, and how fresh it stays: the figures of issue 3.

For 100, 10,000 and 100,000 tenants with a ~1 KB config each, it prints p50/p95/p99 and
calls/s of ``get_config`` for: a near-cache hit; a Redis hit (fakeredis and real Redis);
a miss to SQLite; a miss to PostgreSQL; and, in the same run on the same Redis, the
original module's pattern (Redis GET + ``json.loads`` + pydantic validation per call).
Then: memory per near-cached tenant, the warm-start time, the share of reads that reach
the database under a steady random-tenant load with writes, and the propagation latency
of a write to two other processes.

Everything runs against 127.0.0.1 only, in a PostgreSQL schema and a Redis key prefix of
its own, both removed at the end. Reproduce with:

    python bench/config_resolution.py

(``--sizes 100,10000`` for a shorter run; ``--database-url ""`` / ``--redis-url ""`` to
leave a service out.)
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import fakeredis
import psycopg
import redis

from m11_tenant.cache import ConfigCache, InvalidationListener, NearCache, make_redis_client
from m11_tenant.model import (
    TenantConfig,
    _checked_template,
    _checked_variables,
    validate_config,
)
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.stats import percentile
from m11_tenant.store import ConfigStore, open_store

COMMAND = "python bench/config_resolution.py"
STAMP = "2026-01-01T00:00:00+00:00"


# ---------------------------------------------------------------- data

TEMPLATE_PRESETS = 20  # tenants pick one of a few templates; their variables are their own


def make_config(i: int) -> dict:
    """A realistic ~1 KB config: own variables and branding, one of 20 template presets."""
    return {
        "plan": "pro", "model": "gpt-4", "fallback_model": "gpt-3.5-turbo",
        "temperature": round(0.1 + (i % 13) / 10, 2), "max_tokens": 400 + i % 500,
        "top_k": 3 + i % 18, "alpha": 0.5, "enable_reranking": True, "rerank_top_n": 3,
        "prompt_variables": {"company": f"Tenant {i} Holdings", "tone": "friendly but precise",
                             "product": f"Product line {i % 97}",
                             "support_email": f"help{i}@example.com"},
        "prompt_template": (
            "You are the assistant of {company}. Keep a {tone} tone. You answer questions "
            "about {product} for our customers, using only the context below, and you cite "
            "the passages you used by their [n] number. Never invent prices, dates or "
            "policies. If the context does not contain the answer, say so plainly and "
            f"suggest writing to {{support_email}}. (preset {i % TEMPLATE_PRESETS})\n\n"
            "Context:\n{context}\n\nQuestion: {query}\nAnswer:"),
        "branding": {"primary_color": f"#{i * 2654435761 % 0xFFFFFF:06X}",
                     "secondary_color": "#F6F8FA",
                     "logo_url": f"https://cdn.example.com/logos/{i}.png"},
    }


def tenant_ids(n: int) -> list[str]:
    return [f"bench-{i:06d}" for i in range(n)]


def seed_sqlite(url: str, n: int) -> None:
    store = open_store(url)  # creates the tables; rows go in by bulk insert, not one
    rows = [(tid, json.dumps(make_config(i)), 1, STAMP, "bench")  # write each
            for i, tid in enumerate(tenant_ids(n))]
    store.db.conn.executemany("INSERT INTO tenant_configs VALUES (?, ?, ?, ?, ?)", rows)
    store.db.conn.commit()
    store.close()


def seed_postgres(url: str, n: int) -> None:
    open_store(url).close()  # migrations
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE tenant_configs")
        with cur.copy("COPY tenant_configs (tenant_id, config, version, updated_at, "
                      "updated_by) FROM STDIN") as copy:
            for i, tid in enumerate(tenant_ids(n)):
                copy.write_row((tid, json.dumps(make_config(i)), 1, STAMP, "bench"))


@contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    name = f"m11_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def fill_redis(client: redis.Redis, cache: ConfigCache, store: ConfigStore) -> None:
    pipe = client.pipeline(transaction=False)
    for k, record in enumerate(store.get_many(), 1):
        pipe.set(cache.key(record.tenant_id),
                 json.dumps({"version": record.version, "config": record.config,
                             "updated_at": record.updated_at,
                             "updated_by": record.updated_by}), ex=3600)
        if k % 2000 == 0:
            pipe.execute()
    pipe.execute()


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start:start + 5000])


# ---------------------------------------------------------------- measuring

_passes = itertools.count(1)


def fresh_pass(ids: list[str], reads: int) -> list[str]:
    """A random tenant sequence no other pass uses, with the guard's memo emptied.

    schema remembers the last 4096 templates and variable sets that passed the guard;
    without this, a scenario would profit from the tenants the one before it validated.
    """
    _checked_template.cache_clear()
    _checked_variables.cache_clear()
    return random.Random(next(_passes)).choices(ids, k=reads)


def measure(call: Callable[[str], object], ids: list[str], reads: int,
            budget: float) -> dict[str, float]:
    """Per-call latency on one random sequence, then calls/s on another, untimed.

    Each pass stops after ``reads`` calls or ``budget`` seconds, whichever comes first
    (a validation-bound path manages only hundreds of calls a second). calls/s is given
    per wall second and per CPU second of this thread: the machine is shared, so wall
    time includes other people's work.
    """
    sequence = fresh_pass(ids, reads)
    clock = time.perf_counter_ns
    latencies = []
    deadline = clock() + int(budget * 1e9)
    for tid in sequence:
        started = clock()
        call(tid)
        ended = clock()
        latencies.append(ended - started)
        if ended > deadline:
            break
    latencies.sort()
    count = len(latencies)
    sequence = fresh_pass(ids, count)
    wall, cpu = time.perf_counter(), time.thread_time()
    for tid in sequence:
        call(tid)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return {"p50": percentile(latencies, 50) / 1000, "p95": percentile(latencies, 95) / 1000,
            "p99": percentile(latencies, 99) / 1000, "per_s": count / wall,
            "per_cpu_s": count / max(cpu, 1e-9), "calls": count}


def row(label: str, figures: dict[str, float]) -> str:
    return (f"  {label:<40} p50 {figures['p50']:9.1f} µs  p95 {figures['p95']:9.1f} µs  "
            f"p99 {figures['p99']:9.1f} µs  {figures['per_s']:>10,.0f} calls/s "
            f"({figures['per_cpu_s']:>10,.0f}/CPU-s, n={figures['calls']:,})")


def near_repo(store: ConfigStore, client: redis.Redis, prefix: str,
              size: int) -> TenantConfigRepository:
    cache = ConfigCache(client, prefix=prefix)
    near = NearCache(size, ttl=300)
    listener = InvalidationListener(client, cache.channel, near).start()
    listener.ready.wait(10)
    return TenantConfigRepository(store, cache, near=near, listener=listener)


def original_pattern(client: redis.Redis, cache: ConfigCache) -> Callable[[str], TenantConfig]:
    """The module's get_config on a hit: a GET, a JSON parse, a validation, every call."""
    def get_config(tid: str) -> TenantConfig:
        return TenantConfig.model_validate(json.loads(client.get(cache.key(tid)))["config"])
    return get_config


def round_trip_only(client: redis.Redis, cache: ConfigCache) -> Callable[[str], dict]:
    """The original pattern without its validation: the network floor of any Redis read."""
    def get_config(tid: str) -> dict:
        return json.loads(client.get(cache.key(tid)))["config"]
    return get_config


def memory_per_tenant(store: ConfigStore, ids: list[str]) -> float:
    """Bytes the near cache retains per tenant: everything allocated for it, kept alive."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    near = NearCache(len(ids))
    near.enable()
    token = near.token()
    records = store.get_many(ids)
    for record in records:
        near.put(record.tenant_id, validate_config(record.config), record.version, token)
    del records
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(near) == len(ids)
    return retained / len(ids)


def steady_load(repo: TenantConfigRepository, ids: list[str], reads: int,
                write_every: int) -> tuple[float, int, int]:
    """Random-tenant reads after a warm start, one write per ``write_every`` reads."""
    rng = random.Random(11)
    repo.stats.sources.clear()
    writes = 0
    for k in range(1, reads + 1):
        repo.get_config(rng.choice(ids))
        if k % write_every == 0:
            repo.update_config(rng.choice(ids), {"top_k": rng.randint(3, 20)}, actor="bench")
            writes += 1
    sources = repo.stats.sources
    return sources["database"] / sum(sources.values()), sources["database"], writes


# ---------------------------------------------------------------- propagation (3 processes)

def _reader(db_url: str, redis_url: str, prefix: str, tenant_id: str, ready, seen,
            stop) -> None:
    repo = near_repo(open_store(db_url), make_redis_client(redis_url), prefix, 100)
    last = repo.get_record(tenant_id).version
    ready.put(last)
    while not stop.is_set():
        version = repo.get_record(tenant_id).version
        if version != last:
            seen.put((version, time.monotonic()))
            last = version
        time.sleep(0.0002)  # a serving process, not a spin loop: 0.2 ms resolution
    repo.close()


def propagation(db_url: str, redis_url: str, writes: int) -> dict[str, float]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    tenant = "bench-propagation"
    writer = near_repo(open_store(db_url), make_redis_client(redis_url), prefix, 100)
    writer.update_config(tenant, {"top_k": 1})
    ctx = multiprocessing.get_context("spawn")
    ready, seen, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_reader, args=(db_url, redis_url, prefix, tenant, ready,
                                                 seen, stop)) for _ in range(2)]
    for p in readers:
        p.start()
    for _ in readers:
        ready.get(timeout=60)
    delays = []
    try:
        for n in range(writes):
            written = writer.update_config(tenant, {"top_k": 1 + n % 20}).version
            acknowledged = time.monotonic()
            for _ in readers:
                version, at = seen.get(timeout=30)
                assert version == written, (version, written)
                delays.append((at - acknowledged) * 1000)
            time.sleep(0.005)
    finally:
        stop.set()
        for p in readers:
            p.join(30)
        writer.close()
        drop_prefix(make_redis_client(redis_url), prefix)
    delays.sort()
    return {"p50": percentile(delays, 50), "p99": percentile(delays, 99),
            "max": delays[-1], "samples": len(delays)}


# ---------------------------------------------------------------- the run

def run_size(n: int, args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n== {n:,} tenants, {len(json.dumps(make_config(n // 2)))} B config each ==")
    ids = tenant_ids(n)
    sqlite_url = f"sqlite:///{tmp / f'bench-{n}.db'}"
    seed_sqlite(sqlite_url, n)
    sqlite_store = open_store(sqlite_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    real = make_redis_client(args.redis_url) if args.redis_url else None
    fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with (pg_schema(args.database_url) if args.database_url else _nothing()) as pg_url:
        pg_store = None
        if pg_url:
            started = time.perf_counter()
            seed_postgres(pg_url, n)
            print(f"  seeded PostgreSQL by COPY in {time.perf_counter() - started:.1f} s")
            pg_store = open_store(pg_url)
        source_store = pg_store or sqlite_store
        bus = real or fake

        # Near cache: warm start from the database of record, then random hits.
        cap = min(n, args.warm_cap)
        repo = near_repo(source_store, bus, prefix, cap)
        fresh_pass(ids, 0)  # the guard's memo starts empty
        started, cpu = time.perf_counter(), time.thread_time()
        loaded = repo.warm_start()
        warm, cpu = time.perf_counter() - started, time.thread_time() - cpu
        where = "PostgreSQL" if pg_store else "SQLite"
        line = (f"  warm start: {loaded:,} tenants from {where} in {warm:.2f} s "
                f"({cpu:.2f} CPU-s, {loaded / cpu:,.0f} tenants/CPU-s)")
        if loaded < n:
            line += (f"; all {n:,} at that rate: {n / loaded * warm:,.0f} s "
                     f"({n / loaded * cpu:,.0f} CPU-s) [extrapolated: --warm-cap {cap:,}]")
        print(line)
        loaded_ids = ids[:loaded]
        reads, budget = args.reads, args.budget
        print(row(f"near-cache hit ({loaded:,} cached)",
                  measure(repo.get_config, loaded_ids, reads, budget)))
        assert set(repo.stats.sources) == {"near"}, repo.stats.sources

        # Redis hits (near cache off), and the original pattern on the same Redis.
        for label, client in (("fakeredis", fake), ("real Redis", real)):
            if client is None:
                continue
            cache = ConfigCache(client, prefix=prefix, ttl=3600)
            fill_redis(client, cache, source_store)
            redis_repo = TenantConfigRepository(source_store, cache)
            print(row(f"Redis hit ({label})",
                      measure(redis_repo.get_config, ids, reads, budget)))
            assert set(redis_repo.stats.sources) == {"cache"}, redis_repo.stats.sources
            print(row(f"original: GET+parse+validate ({label})",
                      measure(original_pattern(client, cache), ids, reads, budget)))
            print(row(f"  of which GET+parse only ({label})",
                      measure(round_trip_only(client, cache), ids, reads, budget)))

        # Misses: no cache at all, every read goes to the database.
        for label, store in (("SQLite", sqlite_store), ("PostgreSQL", pg_store)):
            if store is None:
                continue
            miss_repo = TenantConfigRepository(store, ConfigCache(None))
            print(row(f"miss to {label}", measure(miss_repo.get_config, ids, reads, budget)))

        sample = ids[:min(n, args.memory_sample)]
        per_tenant = memory_per_tenant(source_store, sample)
        print(f"  memory per near-cached tenant: {per_tenant / 1024:.2f} KiB, measured on "
              f"{len(sample):,} (x {n:,} = {per_tenant * n / 2**20:.0f} MiB)")

        steady = args.steady_reads
        share, db_reads, writes = steady_load(repo, loaded_ids, steady, args.write_every)
        print(f"  steady random load over the {loaded:,} warm tenants: {steady:,} reads, "
              f"{writes} writes -> {db_reads} database reads = {share:.4%} of reads")
        repo.listener.stop()  # the stores stay open for the next step

        sqlite_store.close()
        if pg_store is not None:
            pg_store.close()
        if real is not None:
            drop_prefix(real, prefix)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--reads", type=int, default=50_000, help="at most, per scenario")
    parser.add_argument("--budget", type=float, default=4.0,
                        help="at most this many seconds per scenario pass")
    parser.add_argument("--warm-cap", type=int, default=100_000,
                        help="warm-load at most this many tenants (the rest is extrapolated)")
    parser.add_argument("--memory-sample", type=int, default=2_000)
    parser.add_argument("--steady-reads", type=int, default=1_000_000)
    parser.add_argument("--write-every", type=int, default=10_000,
                        help="one write per this many reads in the steady load")
    parser.add_argument("--propagation-writes", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"# {COMMAND} {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"# Python {sys.version.split()[0]}, {multiprocessing.cpu_count()} CPUs; all "
          "services on 127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="m11-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            run_size(n, args, Path(tmp))
        if args.redis_url and args.propagation_writes:
            db_url = args.database_url
            with (pg_schema(db_url) if db_url else _nothing()) as pg_url:
                url = pg_url or f"sqlite:///{Path(tmp) / 'propagation.db'}"
                p = propagation(url, args.redis_url, args.propagation_writes)
            print(f"\n== propagation: 1 writer + 2 reader processes, {p['samples']} "
                  f"(write, reader) pairs ==\n  acknowledged write -> served by the other "
                  f"process: p50 {p['p50']:.2f} ms  p99 {p['p99']:.2f} ms  "
                  f"max {p['max']:.2f} ms")


if __name__ == "__main__":
    main()
