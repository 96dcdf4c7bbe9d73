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

Reproduce:  python bench/replication.py                       (fakeredis, in process)
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


def burst(writes: int, writers: int, redis_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as base_dir:
        cluster = _cluster(base_dir, redis_url)
        try:
            cluster.start(block_ms=5)

            def writer(offset: int) -> None:  # writes n = offset, offset + writers, ...
                for n in range(offset, writes, writers):
                    cluster.region(REGIONS[n % 3]).update_config(f"tenant-{n % 50:03d}", {
                        "top_k": 1 + n % 20, "temperature": (n % 20) / 10})

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            committed = time.perf_counter() - started
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
            return {"changes": applied, "seconds": elapsed, "per_second": applied / elapsed}
        finally:
            _cleanup(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=1, help="concurrent writer threads")
    parser.add_argument("--apply", type=int, default=2000, help="changes for the apply loop")
    parser.add_argument("--redis-url", default=None, help="real Redis (default: fakeredis)")
    parser.add_argument("--database-url", default=None,
                        help="postgresql://… : one schema per region (default: SQLite files)")
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
              f"in {a['seconds']:.2f} s = {a['per_second']:.0f} changes/s")
    url = f" --redis-url {args.redis_url}" if args.redis_url else ""
    url += f" --database-url {args.database_url}" if args.database_url else ""
    print(f"reproduce: python bench/replication.py --writes {args.writes} "
          f"--writers {args.writers} --apply {args.apply}{url}")


if __name__ == "__main__":
    main()
