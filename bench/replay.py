"""Replay and query-log cost: a 200-question offline replay, and /query with the log on vs off.

1. **Replay**: a tenant's query log filled with 200 questions (the 80 eval questions, cycled),
   replayed offline under its current config and a proposed one (top_k 5 -> 8, alpha 0.5 ->
   0.7, reranking on, gpt-3.5-turbo -> gpt-4-turbo), exactly as ``POST /config/{id}/preview``
   with ``"replay": 200`` does it (through the same API helper, so the audit line is
   written too). Prints wall time and CPU time per pass (median of ``--repeat`` passes).
2. **/query overhead** (``--queries N``): N ``POST /query`` calls in process (TestClient,
   SQLite file, fakeredis) for a tenant with ``query_log_size`` 0 and for one with 200,
   interleaved; prints the mean and p50/p95 latency of each. The log write runs after the
   response is sent (a background task); TestClient waits for it, so the "on" figure
   includes it.

    python bench/replay.py [--repeat 3] [--queries 200] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fakeredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from m11_tenant.app import Principal, create_app  # noqa: E402
from m11_tenant.cache import ConfigCache  # noqa: E402
from m11_tenant.rag import RagPipeline, load_eval  # noqa: E402
from m11_tenant.rag.querylog import logged_query  # noqa: E402
from m11_tenant.repository import TenantConfigRepository  # noqa: E402
from m11_tenant.schema import apply_update  # noqa: E402
from m11_tenant.settings import Settings  # noqa: E402
from m11_tenant.store import open_store  # noqa: E402
from m11_tenant.web.change_safety import run_replay  # noqa: E402

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PROPOSED = {"top_k": 8, "alpha": 0.7, "enable_reranking": True, "rerank_top_n": 5,
            "model": "gpt-4-turbo", "plan": "starter"}
REPLAYED = 200


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def open_repo(database_url: str | None, tmp: str) -> TenantConfigRepository:
    store = open_store(database_url or f"sqlite:///{tmp}/bench.db")
    return TenantConfigRepository(store, ConfigCache(fakeredis.FakeRedis(
        server=fakeredis.FakeServer())))


def bench_replay(repo: TenantConfigRepository, repeat: int) -> None:
    tid = "bench-replay"
    repo.update_config(tid, {"query_log_size": REPLAYED})
    pipeline = RagPipeline(repo, repo.ledger, generation="offline")
    questions = [q.question for q in load_eval()]
    for i in range(REPLAYED):  # fill the log as /query would (each answered once)
        result = pipeline.run(repo.get_config(tid), questions[i % len(questions)], tenant_id=tid)
        repo.append_query_log(logged_query(tid, result), keep=REPLAYED)
    app = create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY,
                                             m11_replay_time_budget=300.0),
                     pipeline=pipeline)
    ctx = app.state.ctx
    current = repo.get_record(tid)
    proposed = apply_update(current.config, PROPOSED, merge=True)
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        report = run_replay(ctx, Principal("admin", "bench"), tid, current, proposed, REPLAYED)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    s = report["summary"]
    wall = statistics.median(walls)
    print(f"replay of {s['replayed']} logged questions, offline, {repeat} passes: median "
          f"{wall:.2f} s wall ({wall / REPLAYED * 1e3:.1f} ms a question, both configs), "
          f"{statistics.median(cpus):.2f} s CPU")
    print(f"  report: sources changed {s['sources_changed_share']:.0%}, mean overlap "
          f"{s['mean_source_overlap']:.2f}, answers changed {s['answers_changed_share']:.0%}, "
          f"cost delta ${s['cost_delta_usd']:.5f}, projected monthly delta "
          f"${s['projected_monthly_cost_delta_usd']:.2f}")


def bench_query(repo: TenantConfigRepository, queries: int) -> None:
    app = create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY, m11_rate_queries="off"),
                     pipeline=RagPipeline(repo, repo.ledger, generation="offline"))
    client = TestClient(app)
    tenants = {"off": "bench-log-off", "on": "bench-log-on"}
    repo.update_config(tenants["off"], {"query_log_size": 0, "plan": "enterprise"})
    repo.update_config(tenants["on"], {"query_log_size": 200, "plan": "enterprise"})
    questions = [q.question for q in load_eval()]
    times: dict[str, list[float]] = {"off": [], "on": []}
    for tid in tenants.values():  # warm-up: the index, the caches
        client.post("/query", headers=ADMIN, json={"tenant_id": tid, "query": questions[0]})
    for i in range(queries):
        for kind, tid in tenants.items():
            started = time.perf_counter()
            response = client.post("/query", headers=ADMIN,
                                   json={"tenant_id": tid, "query": questions[i % len(questions)]})
            times[kind].append((time.perf_counter() - started) * 1e3)
            assert response.status_code == 200, response.text
    kept = len(repo.query_log(tenants["on"], limit=1000))
    print(f"POST /query, {queries} calls each, in process ({repo.url.split(':')[0]}):")
    for kind, values in times.items():
        print(f"  log {kind:<3}: mean {statistics.fmean(values):.2f} ms, p50 "
              f"{percentile(values, 50):.2f} ms, p95 {percentile(values, 95):.2f} ms")
    extra = statistics.fmean(times["on"]) - statistics.fmean(times["off"])
    print(f"  difference of means: {extra:+.2f} ms; kept in the 'on' tenant's log: {kept}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="replay passes (median reported)")
    ap.add_argument("--queries", type=int, default=200, help="/query calls per tenant (0: skip)")
    ap.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = open_repo(args.database_url, tmp)
        try:
            bench_replay(repo, args.repeat)
            if args.queries:
                bench_query(repo, args.queries)
        finally:
            repo.close()
    print("\ncommand: python bench/replay.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
