"""Concurrency with a slow model: ``POST /query`` on one worker, the model answering in 500 ms.

Starts a provider stand-in (``python -m m11_tenant.rag.standins --latency 0.5``: every
answer takes 500 ms, like a real model) and ``python -m m11_tenant serve --workers 1``
pointed at it through ``OPENAI_BASE_URL``/``ANTHROPIC_BASE_URL``, seeds 100 tenants, then
drives ``POST /query`` with 50, 200 and 500 concurrent keep-alive clients (the raw asyncio
client of ``bench/http_load.py``, in its own process). With a model that takes 0.5 s, N
clients can never do better than N / 0.5 s requests per second: the table prints req/s
against that bound, p50/p99, non-200 answers and the server's memory (RSS) before and after
each level, and the CPU time each process spent per request (server and stand-in): a
server that needs C ms of CPU per request cannot serve more than 1000 / C requests per
second on one core, whatever the concurrency. The goal: at least 90 % of the bound at 200
clients, no errors, memory flat. Only 127.0.0.1 is ever contacted.

    python bench/live_concurrency.py [--clients 50,200,500] [--seconds 15] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import http_load as load  # the sibling script: seeding, the server, the raw HTTP client

GOAL_SHARE, GOAL_CLIENTS = 0.90, 200


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_standin(latency: float) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "m11_tenant.rag.standins", "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True, cwd=load.ROOT,
        env={**os.environ, "PYTHONPATH": str(load.ROOT)})
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, {k: v for k, v in info.items() if k != "url"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="50,200,500")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level")
    parser.add_argument("--latency", type=float, default=0.5, help="the model's seconds")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    standin, provider_env = start_standin(args.latency)
    os.environ.update(provider_env)  # Server.start passes our environment to the server
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="m11-live-bench-") as tmp:
            server = load.Server("live", load.ROOT, "bench", Path(tmp))
            load.seed(server.tree, server.url, server.prefix)
            server.start(1, None)
            assert server.proc is not None
            try:
                server.drive("query", 100, 120, 20)  # index built, clients warm
                for clients in levels:
                    before = rss_mib(server.proc.pid)
                    standin_cpu = load.cpu_seconds(standin.pid)
                    count = int(clients / args.latency * args.seconds * 1.2) + clients
                    row = server.drive("query", count, args.seconds, clients)
                    done = max(1, row["requests"])
                    rows.append({**row, "clients": clients, "bound": clients / args.latency,
                                 "rss_before": before, "rss_after": rss_mib(server.proc.pid),
                                 "server_cpu_ms": row["cpu_us"] / 1e3,
                                 "standin_cpu_ms": (load.cpu_seconds(standin.pid)
                                                    - standin_cpu) / done * 1e3})
            finally:
                server.stop()
    finally:
        standin.terminate()
        standin.wait(timeout=30)

    print(f"POST /query, one worker, the model (stand-in) answering in {args.latency:g} s, "
          f"{os.cpu_count()} CPUs shared by server, stand-in and load client")
    print(f"{'clients':>8}{'bound/s':>9}{'req/s':>8}{'of bound':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-200':>9}{'server CPU ms/req':>19}{'stand-in CPU':>14}"
          f"{'RSS MiB before → after':>25}")
    for r in rows:
        print(f"{r['clients']:>8}{r['bound']:>9.0f}{r['rps']:>8.0f}{r['rps'] / r['bound']:>10.0%}"
              f"{r['p50'] * 1e3:>9.0f}{r['p99'] * 1e3:>9.0f}{r['non200']:>9}"
              f"{r['server_cpu_ms']:>19.1f}{r['standin_cpu_ms']:>14.1f}"
              f"{r['rss_before']:>15.0f} → {r['rss_after']:.0f}")
        other = {code: n for code, n in r["statuses"].items() if code != 200}
        if other:
            print(f"{'':>8}statuses other than 200: {other}")
    goal = next((r for r in rows if r["clients"] == GOAL_CLIENTS), None)
    if goal is not None:
        share = goal["rps"] / goal["bound"]
        met = share >= GOAL_SHARE and not goal["non200"]
        print(f"goal (>= {GOAL_SHARE:.0%} of the bound at {GOAL_CLIENTS} clients, no errors): "
              f"{'met' if met else 'not met'} ({share:.0%})")
    print("reproduce: python bench/live_concurrency.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
