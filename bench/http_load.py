"""HTTP load on the management API: requests/s and p50/p95/p99 on loopback.

Seeds 100 tenants into a fresh SQLite database, starts ``python -m m11_tenant serve`` (uvicorn)
on 127.0.0.1 with 1 and then 2 workers, and drives it from a separate client process (a
small asyncio HTTP/1.1 keep-alive client, so the client costs little CPU). Every run is
bounded by a request count and a time limit. Scenarios:

* ``GET /config/{id}`` round-robin over the 100 tenants (the config read path)
* ``POST /query`` round-robin over the tenants (retrieval + offline generation + ledger)

The course's acceptance line is "1,000 req/s with 100 tenant configs, p95 < 2 s"; the
summary prints where each scenario stands against it. Only 127.0.0.1 is ever contacted.

    python bench/http_load.py [--workers 1,2] [--get-requests 20000] [--query-requests 1500]
                              [--seconds 30] [--concurrency 32] [--redis-url redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_KEY = "m11a_bench-admin-key-0123456789-abcdefXYZ"
TENANTS = 100
PLANS = ("pro", "enterprise", "starter")
QUESTIONS = ("What is hybrid search?", "How do I roll back a tenant's config?",
             "How are API keys stored?", "What does the reranker do?")
TARGET_RPS, TARGET_P95_S = 1000, 2.0


# ---- the client process --------------------------------------------------------------------
def build_requests(kind: str, count: int) -> list[bytes]:
    head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
    requests = []
    for n in range(count):
        tenant = f"bench-{n % TENANTS:03d}"
        if kind == "get":
            requests.append(f"GET /config/{tenant} HTTP/1.1\r\n{head}\r\n".encode())
        else:
            body = json.dumps({"tenant_id": tenant, "query": QUESTIONS[n % len(QUESTIONS)]})
            requests.append((f"POST /query HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    return requests


async def _connection(port: int, queue: list[bytes], deadline: float,
                      latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue and time.perf_counter() < deadline:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _drive(port: int, kind: str, count: int, seconds: float, concurrency: int) -> dict:
    queue = build_requests(kind, count)[::-1]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(port, queue, deadline, latencies, statuses)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed}


def client_main(args: argparse.Namespace) -> None:
    result = asyncio.run(_drive(args.port, args.kind, args.count, args.seconds,
                                args.concurrency))
    print(json.dumps(result))


# ---- the orchestrating process ------------------------------------------------------------
def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def seed(url: str) -> None:
    from m11_tenant import open_repository

    repo = open_repository(url, redis_url="")
    for n in range(TENANTS):
        repo.update_config(f"bench-{n:03d}", {"plan": PLANS[n % 3], "top_k": 3 + n % 8,
                                              "alpha": round((n % 5) / 4, 2)},
                           merge=False, actor="bench")
    repo.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, workers: int, redis_url: str | None, log: Path) -> tuple:
    port = free_port()
    env = {**os.environ, "M11_ADMIN_KEY": ADMIN_KEY, "PYTHONPATH": str(ROOT),
           "M11_RATE_QUERIES": "off"}
    env.pop("REDIS_URL", None)
    cmd = [sys.executable, "-m", "m11_tenant", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--workers", str(workers), "--database-url", url, "--no-access-log"]
    if redis_url:
        cmd += ["--redis-url", redis_url]
    sink = log.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=log.parent)
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start; see {log}:\n{log.read_text()[-2000:]}")


def run_client(port: int, kind: str, count: int, seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "_client", "--port", str(port), "--kind", kind,
         "--count", str(count), "--seconds", str(seconds), "--concurrency", str(concurrency)],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout)


def summarize(name: str, workers: int, result: dict) -> dict:
    ordered = sorted(result["latencies"])
    statuses = {int(code): n for code, n in result["statuses"].items()}  # JSON keys are str
    return {"scenario": name, "workers": workers, "requests": len(ordered),
            "ok": statuses.get(200, 0),
            "other": {code: n for code, n in statuses.items() if code != 200},
            "seconds": result["elapsed"], "rps": len(ordered) / result["elapsed"],
            "p50": percentile(ordered, 50), "p95": percentile(ordered, 95),
            "p99": percentile(ordered, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--get-requests", type=int, default=20_000)
    parser.add_argument("--query-requests", type=int, default=1_500)
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per scenario")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--redis-url", help="a real Redis shared by the workers (default: "
                        "fakeredis with 1 worker; no cache with several)")
    args = parser.parse_args()
    if args.redis_url and not args.redis_url.startswith("redis://127.0.0.1"):
        raise SystemExit("only a Redis on 127.0.0.1 may be used")

    rows = []
    with tempfile.TemporaryDirectory(prefix="m11-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        seed(url)
        for workers in [int(w) for w in args.workers.split(",")]:
            proc, port = start_server(url, workers, args.redis_url, Path(tmp) / f"w{workers}.log")
            try:
                # Warm up: every worker loads its config cache and builds its RAG index.
                run_client(port, "query", 8 * workers, 120, 2 * workers)
                run_client(port, "get", 500, 30, 8)
                for kind, name, count in (("get", "GET /config/{id}", args.get_requests),
                                          ("query", "POST /query", args.query_requests)):
                    result = run_client(port, kind, count, args.seconds, args.concurrency)
                    rows.append(summarize(name, workers, result))
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    if args.redis_url:  # leave the shared Redis as we found it
        import redis

        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter("m11:*bench-*"):
            client.delete(key)
    cache = f"Redis {args.redis_url}" if args.redis_url else "fakeredis (1 worker) / no cache (2+)"
    print(f"m11_tenant HTTP load, {TENANTS} tenants, SQLite, {cache}, "
          f"{args.concurrency} keep-alive connections, {os.cpu_count()} CPUs")
    print(f"{'scenario':<18}{'workers':>8}{'requests':>10}{'non-200':>9}{'req/s':>9}"
          f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  vs 1,000 req/s & p95 < 2 s")
    for r in rows:
        verdict = ("meets" if r["rps"] >= TARGET_RPS and r["p95"] < TARGET_P95_S
                   else f"{r['rps'] / TARGET_RPS:.0%} of the rate"
                   + (", p95 ok" if r["p95"] < TARGET_P95_S else ", p95 over"))
        print(f"{r['scenario']:<18}{r['workers']:>8}{r['requests']:>10}"
              f"{r['requests'] - r['ok']:>9}{r['rps']:>9.0f}{r['p50'] * 1e3:>9.1f}"
              f"{r['p95'] * 1e3:>9.1f}{r['p99'] * 1e3:>9.1f}  {verdict}")
        if r["other"]:
            print(f"{'':<18}statuses other than 200: {r['other']}")
    print("reproduce: python bench/http_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        client_parser = argparse.ArgumentParser()
        client_parser.add_argument("_client")
        for name, kind in (("--port", int), ("--count", int), ("--seconds", float),
                           ("--concurrency", int)):
            client_parser.add_argument(name, type=kind, required=True)
        client_parser.add_argument("--kind", choices=("get", "query"), required=True)
        client_main(client_parser.parse_args())
    else:
        main()
