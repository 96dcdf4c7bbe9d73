"""Replication benchmark: lag of a write burst across three regions, and apply throughput.

1. Burst: 1,000 writes spread round-robin over three regions and 50 tenants, committed as
   fast as ``--writers`` threads can (default 1), while every region runs its apply loop
   in a background thread (as separate region processes would). Lag = the applying
   region's clock at apply minus the origin's clock at commit, over every (origin, target)
   pair: 2,000 samples.
2. Apply loop: N changes committed in one region while another is cut off, then the cut
   region catches up alone; changes applied per second (read, merge, store, ack). Changes
   to one tenant within a read batch are folded into one write, so it is measured twice:
   over 100 tenants (hot tenants, much folding) and over N distinct tenants (none).
   "busy" = changes / time spent merging, storing and acknowledging (reads excluded), the
   figure a region process reports as ``m11_replication_apply_seconds``.

``--processes`` runs the same two measurements again with each region its own
``serve --region`` process on loopback and a private ``redis-server`` (SQLite files, or
the schemas of ``--database-url``): the burst goes through the regions' HTTP APIs, the
lag comes from each region's admin health detail (per pair: the processes keep their own
samples, so p50/p99 are given as the range over the six pairs), and the catch-up region
is stopped, sent N changes through the other's bulk endpoint, and restarted.

Reproduce:  python bench/replication.py                       (fakeredis, in process)
            python bench/replication.py --processes           (also as processes)
            python bench/replication.py --redis-url redis://127.0.0.1:6379/15
            python bench/replication.py --redis-url redis://127.0.0.1:6379/15 \
                --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from m11_tenant.regions import open_cluster
from m11_tenant.stats import percentile

REGIONS = ["us", "eu", "ap"]


DATABASE_URL: str | None = None  # --database-url: regions in PostgreSQL schemas


def _cluster(base_dir: str, redis_url: str | None):
    suffix = uuid.uuid4().hex[:8]
    return open_cluster(REGIONS, "field-merge", redis_url=redis_url, base_dir=base_dir,
                        database_url=DATABASE_URL, schema_prefix=f"m11_bench_{suffix}",
                        namespace=f"bench-regions-{suffix}", lag_alert_ms=None)


def _cleanup(cluster) -> None:
    cluster.close()
    for key in cluster.client.scan_iter(match=f"{cluster.namespace}*"):
        cluster.client.delete(key)
    if DATABASE_URL:
        from m11_tenant.regions.postgres import drop_region_schemas

        prefix = cluster.namespace.replace("bench-regions-", "m11_bench_")
        drop_region_schemas(DATABASE_URL, prefix, REGIONS)


def burst_change(n: int) -> tuple[str, str, dict[str, float]]:
    """Write ``n`` of a burst: the region it goes through, the tenant, the change."""
    return REGIONS[n % 3], f"tenant-{n % 50:03d}", {"top_k": 1 + n % 20,
                                                    "temperature": (n % 20) / 10}


def timed_writers(write: Callable[[int], None], writes: int, writers: int) -> float:
    """``writers`` threads call ``write(n)`` for n = offset, offset + writers, ...;
    returns the seconds until every write returned."""
    def run(offset: int) -> None:
        for n in range(offset, writes, writers):
            write(n)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def burst(writes: int, writers: int, redis_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as base_dir:
        cluster = _cluster(base_dir, redis_url)
        try:
            cluster.start(block_ms=5)

            def write(n: int) -> None:
                region, tenant, change = burst_change(n)
                cluster.region(region).update_config(tenant, change)

            started = time.perf_counter()
            committed = timed_writers(write, writes, writers)
            deadline = time.monotonic() + 120
            while sum(r.applied for r in cluster.regions.values()) < 2 * writes:
                if time.monotonic() > deadline:
                    raise SystemExit("replication did not finish within 120 s")
                time.sleep(0.01)
            drained = time.perf_counter() - started
            cluster.stop()
            samples = sorted(s for src in REGIONS for dst in REGIONS if src != dst
                             for s in cluster.lag_monitor.samples(src, dst))
            assert cluster.converged(), "regions disagree after the burst"
            return {"writes": writes, "samples": len(samples),
                    "commit_s": committed, "drain_s": drained,
                    "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                    "max_ms": samples[-1]}
        finally:
            _cleanup(cluster)


def apply_loop(changes: int, tenants: int, redis_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as base_dir:
        cluster = _cluster(base_dir, redis_url)
        try:
            cluster.partition("eu")
            cluster.partition("ap")
            us = cluster.region("us")
            for n in range(changes):
                us.update_config(f"tenant-{n % tenants:04d}", {"top_k": 1 + n % 20})
            cluster.heal("eu")
            eu = cluster.regions["eu"]
            started = time.perf_counter()
            applied = 0
            while moved := eu.poll(count=500):
                applied += moved
            elapsed = time.perf_counter() - started
            return {"changes": applied, "seconds": elapsed, "per_second": applied / elapsed,
                    "busy_per_second": applied / eu.apply_seconds}
        finally:
            _cleanup(cluster)


# ---- regions as processes ------------------------------------------------------------
def _replication(server) -> dict:
    reply = httpx.get(f"{server.url}/health/detail", headers=server.headers, timeout=30)
    return reply.json()["detail"]["replication"]


def _wait_applied(servers, expected: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sum(_replication(s)["applied"] for s in servers) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"replication did not finish within {timeout:.0f} s")
        time.sleep(0.05)


def _process_urls(database_url: str | None, prefix: str) -> dict[str, str] | None:
    if not database_url:
        return None
    from m11_tenant.regions.postgres import region_urls

    return region_urls(database_url, prefix, REGIONS)


def process_burst(regions, writes: int, writers: int) -> dict[str, float]:
    servers = [regions[name] for name in REGIONS]

    clients = {s.name: httpx.Client(base_url=s.url, headers=s.headers, timeout=30)
               for s in servers}  # thread-safe: shared by the writers

    def write(n: int) -> None:
        region, tenant, change = burst_change(n)
        clients[region].post(f"/config/{tenant}", json={"config": change}).raise_for_status()

    started = time.perf_counter()
    committed = timed_writers(write, writes, writers)
    for client in clients.values():
        client.close()
    _wait_applied(servers, 2 * writes)
    drained = time.perf_counter() - started
    pairs = [pair for s in servers for pair in _replication(s)["lag"].values()]
    return {"writes": writes, "samples": sum(p["samples"] for p in pairs),
            "commit_s": committed, "drain_s": drained,
            "p50_ms": (min(p["p50_ms"] for p in pairs), max(p["p50_ms"] for p in pairs)),
            "p99_ms": (min(p["p99_ms"] for p in pairs), max(p["p99_ms"] for p in pairs)),
            "max_ms": max(p["max_ms"] for p in pairs)}


def process_apply(regions, changes: int, tenants: int) -> dict[str, float]:
    """eu stopped; ``changes`` written in us through its bulk endpoint; eu restarted."""
    us, eu = regions["us"], regions["eu"]
    eu.stop()
    names = [f"apply-{tenants}-{n:04d}" for n in range(tenants)]
    with httpx.Client(base_url=us.url, headers=us.headers, timeout=300) as client:
        for round_ in range(changes // tenants):  # each round changes every tenant once
            for start in range(0, tenants, 1000):
                client.post("/tenants/bulk", json={
                    "config": {"top_k": 1 + round_ % 20},
                    "tenants": names[start:start + 1000]}).raise_for_status()
    eu.start()
    _wait_applied([eu], changes // tenants * tenants)
    state = _replication(eu)
    return {"changes": state["applied"], "busy_per_second": state["applied"] /
            state["apply_seconds"]}


def report_processes(writes: int, writers: int, changes: int,
                     database_url: str | None) -> None:
    from m11_tenant.regions.loopback import LoopbackRegions

    prefix = f"m11_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as base_dir:
        try:
            with LoopbackRegions(REGIONS, Path(base_dir),
                                 database_urls=_process_urls(database_url, prefix)) as regions:
                b = process_burst(regions, writes, writers)
                applies = [(tenants, process_apply(regions, changes, tenants))
                           for tenants in (100, changes)]
        finally:
            if database_url:
                from m11_tenant.regions.postgres import drop_region_schemas

                drop_region_schemas(database_url, prefix, REGIONS)
    stores = "a PostgreSQL schema" if database_url else "SQLite"
    print(f"as processes: 3 `serve --region` processes, a private redis-server (AOF, fsync "
          f"always), {stores} per region, writes over HTTP")
    print(f"burst: {b['writes']} writes by {writers} writer thread(s) committed in "
          f"{b['commit_s']:.2f} s, all applied in every region after {b['drain_s']:.2f} s")
    print(f"  commit-to-apply lag over {b['samples']} samples, range over the 6 pairs: "
          f"p50 {b['p50_ms'][0]:.1f}-{b['p50_ms'][1]:.1f} ms, "
          f"p99 {b['p99_ms'][0]:.1f}-{b['p99_ms'][1]:.1f} ms, max {b['max_ms']:.1f} ms")
    for tenants, a in applies:
        print(f"apply loop: {a['changes']} changes to {tenants} tenants caught up by a "
              f"restarted region: busy {a['busy_per_second']:.0f} changes/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=1, help="concurrent writer threads")
    parser.add_argument("--apply", type=int, default=2000, help="changes for the apply loop")
    parser.add_argument("--redis-url", default=None, help="real Redis (default: fakeredis)")
    parser.add_argument("--database-url", default=None,
                        help="postgresql://… : one schema per region (default: SQLite files)")
    parser.add_argument("--processes", action="store_true",
                        help="also run each region as its own serve --region process")
    args = parser.parse_args()
    global DATABASE_URL
    DATABASE_URL = args.database_url
    transport = args.redis_url or "fakeredis (in process)"
    b = burst(args.writes, args.writers, args.redis_url)
    stores = "a PostgreSQL schema" if args.database_url else "SQLite"
    print(f"transport: {transport}; 3 regions, field-merge, {stores} per region")
    print(f"burst: {b['writes']} writes by {args.writers} writer thread(s) committed in "
          f"{b['commit_s']:.2f} s, all applied in every region after {b['drain_s']:.2f} s")
    print(f"  commit-to-apply lag over {b['samples']} (origin, target) samples: "
          f"p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms, max {b['max_ms']:.1f} ms")
    for tenants in (100, args.apply):  # hot tenants (changes coalesce), then all distinct
        a = apply_loop(args.apply, tenants, args.redis_url)
        print(f"apply loop: {a['changes']} changes to {tenants} tenants caught up by one region "
              f"in {a['seconds']:.2f} s = {a['per_second']:.0f} changes/s "
              f"(busy: {a['busy_per_second']:.0f} changes/s)")
    if args.processes:
        report_processes(args.writes, args.writers, args.apply, args.database_url)
    url = f" --redis-url {args.redis_url}" if args.redis_url else ""
    url += f" --database-url {args.database_url}" if args.database_url else ""
    url += " --processes" if args.processes else ""
    print(f"reproduce: python bench/replication.py --writes {args.writes} "
          f"--writers {args.writers} --apply {args.apply}{url}")


if __name__ == "__main__":
    main()
