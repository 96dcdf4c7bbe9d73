"""The daily quota under a burst: N concurrent queries against Q free slots answer exactly
min(N, Q), with Redis up and with Redis down.

Starts its own ``redis-server`` on a free loopback port (never the shared one), seeds
tenants on the free plan (100 queries a day) into a fresh SQLite database (or a PostgreSQL
schema of its own with ``--database-url``), starts ``python -m m11_tenant serve`` with
that Redis, and fires each burst from N threads released together. Then it stops the Redis
and fires the same bursts again. Bounded: a few seconds per burst.

    python bench/quota_burst.py [--bursts 160:100,60:100,40:7] [--workers 2]
                                [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_load import free_port, wait_ready  # noqa: E402 - ROOT is on the path now

ADMIN_KEY = "bench-admin-key-0123456789abcdef0123456789"
FREE_QUOTA = 100


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            import redis

            redis.Redis(port=port).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def burst(base: str, headers: dict[str, str], tenant_id: str, n: int) -> Counter:
    """``n`` threads, released together, each sending one query; their outcomes
    (``200``, or the status and error code)."""
    start = threading.Barrier(n)
    outcomes: list[str] = []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=base, timeout=120, limits=limits, headers=headers) as client:

        def ask() -> None:
            start.wait()
            r = client.post("/query", json={"tenant_id": tenant_id, "query": "What is BM25?"})
            outcomes.append("200" if r.status_code == 200
                            else f"{r.status_code} {r.json()['error']['code']}")

        threads = [threading.Thread(target=ask) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return Counter(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", default="160:100,60:100,40:7",
                        help="N:Q pairs: N concurrent queries against Q free slots")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="a PostgreSQL on 127.0.0.1 (default SQLite)")
    args = parser.parse_args()
    bursts = [tuple(int(x) for x in pair.split(":")) for pair in args.bursts.split(",")]
    if any(q > FREE_QUOTA for _n, q in bursts):
        raise SystemExit(f"Q is at most the free plan's {FREE_QUOTA}")

    from m11_tenant import open_repository

    run = uuid.uuid4().hex[:6]
    rows = []
    with tempfile.TemporaryDirectory(prefix="m11-quota-") as tmp_name:
        tmp = Path(tmp_name)
        url = args.database_url or f"sqlite:///{tmp}/quota.db"
        schema = None
        if url.startswith("postgresql"):
            import psycopg

            schema = f"m11_quota_{run}"
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f"CREATE SCHEMA {schema}")
            url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        repo = open_repository(url, redis_url="")
        today = datetime.now(UTC).date()
        for redis_state in ("up", "down"):
            for i, (_n, q) in enumerate(bursts):
                tenant = f"quota-{redis_state}-{i}-{run}"
                repo.update_config(tenant, {"plan": "free"}, actor="bench")
                if q < FREE_QUOTA:
                    repo.ledger.record_usage(tenant, today, queries=FREE_QUOTA - q,
                                             prompt_tokens=0, completion_tokens=0, cost_usd=0)
        redis_proc, redis_url = start_redis(tmp)
        port = free_port()
        env = {**os.environ, "M11_ADMIN_KEY": ADMIN_KEY, "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        log = tmp / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "m11_tenant", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--workers", str(args.workers), "--database-url", url, "--redis-url",
             redis_url, "--no-access-log"], env=env, cwd=tmp, stdout=log.open("w"),
            stderr=subprocess.STDOUT)
        try:
            wait_ready(server, port, log)
            base = f"http://127.0.0.1:{port}"
            for redis_state in ("up", "down"):
                if redis_state == "down":
                    redis_proc.terminate()
                    redis_proc.wait(timeout=10)
                for i, (n, q) in enumerate(bursts):
                    tenant = f"quota-{redis_state}-{i}-{run}"
                    started = time.perf_counter()
                    outcomes = burst(base, {"Authorization": f"Bearer {ADMIN_KEY}"},
                                     tenant, n)
                    used = repo.ledger.usage_totals(tenant, today).queries_today
                    rows.append((redis_state, n, q, outcomes, used,
                                 time.perf_counter() - started))
        finally:
            server.terminate()
            server.wait(timeout=30)
            if redis_proc.poll() is None:
                redis_proc.terminate()
            repo.close()
            if schema:
                with psycopg.connect(args.database_url, autocommit=True) as admin:
                    admin.execute(f"DROP SCHEMA {schema} CASCADE")

    backend = "PostgreSQL" if schema else "SQLite"
    print(f"quota under a burst: {backend}, `serve --workers {args.workers}`, free plan "
          f"({FREE_QUOTA}/day), N threads released together")
    print(f"{'Redis':<6}{'N':>5}{'Q':>5}{'min(N,Q)':>10}{'200':>6}{'429 quota':>10}{'other':>7}"
          f"{'counted':>9}  verdict")
    ok_all = True
    for state, n, q, outcomes, used, _seconds in rows:
        answered = outcomes.get("200", 0)
        refused = outcomes.get("429 quota_exceeded", 0)
        other = n - answered - refused
        ok = answered == min(n, q) and refused == n - answered and used == FREE_QUOTA - q + answered
        ok_all &= ok
        print(f"{state:<6}{n:>5}{q:>5}{min(n, q):>10}{answered:>6}{refused:>10}{other:>7}"
              f"{FREE_QUOTA - q + answered:>4}/{used:<4}  {'exact' if ok else 'WRONG'}")
        if other:
            print(f"       other outcomes: {dict(outcomes)}")
    print("reproduce: python bench/quota_burst.py " + " ".join(sys.argv[1:]))
    if not ok_all:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
