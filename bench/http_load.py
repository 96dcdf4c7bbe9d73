"""HTTP load on the management API, side by side with a bare endpoint and a baseline commit.

Seeds 100 tenants into fresh SQLite databases, starts ``python -m m11_tenant serve``
(uvicorn) on 127.0.0.1 for this checkout and, with ``--baseline DIR``, for another
checkout (e.g. a worktree of an older commit), plus a *bare* FastAPI app on the same
uvicorn: ``GET /config/{id}`` returning a constant config behind a Bearer check, and the
module's reference pattern (Redis GET + ``json.loads`` + pydantic + an INFO log line).
A separate client process (a small asyncio HTTP/1.1 keep-alive client) drives each server
in turn for a bounded time; rounds alternate the servers, so machine noise hits all of them
alike, and the summary prints the median ratio over the rounds. Scenarios:

* ``GET /config/{id}`` round-robin over the 100 tenants
* ``POST /query`` with questions drawn from the 80 eval questions (embeddings cached)
* ``POST /query`` with every question new (each one embedded)

Then in process: per-stage p50/p95 of a query, embed ms per question fresh and cached.
Only 127.0.0.1 is ever contacted. ``wrk`` is not needed.

    python bench/http_load.py [--baseline ../wt-base] [--workers 1,2] [--seconds 4]
                              [--rounds 2] [--concurrency 16] [--redis-url redis://127.0.0.1:6379/2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_KEY = "m11a_bench-admin-key-0123456789-abcdefXYZ"
TENANTS = 100
PLANS = ("pro", "enterprise", "starter")
SCENARIOS = (("get", "GET /config/{id}"), ("query", "POST /query, eval questions"),
             ("fresh", "POST /query, every question new"))


# ---- the bare app (runs in its own uvicorn process) ----------------------------------------
def bare_app(redis_url: str | None) -> FastAPI:
    """The floor: FastAPI's own cost for a Bearer-checked constant config (an ``async``
    endpoint: FastAPI's cheapest ordinary path), and the module's reference read (Redis GET
    + json.loads + pydantic + a log line, a plain ``def`` as the module wrote it)."""
    import fakeredis
    import redis
    from fastapi import Header, HTTPException
    from fastapi.responses import JSONResponse

    from m11_tenant.schema import TenantConfig

    config = {"tenant_id": "bench-000", "config": TenantConfig().model_dump(), "version": 1,
              "source": "near_cache", "degraded": False, "updated_at": "2026-01-01T00:00:00",
              "updated_by": "bench"}
    client = (redis.Redis.from_url(redis_url) if redis_url
              else fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    for n in range(TENANTS):
        client.set(f"bench-ref:{n:03d}", json.dumps(TenantConfig().model_dump()))
    log = logging.getLogger("reference")
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115
    app = FastAPI()

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {ADMIN_KEY}":
            raise HTTPException(401)

    @app.get("/config/{tenant_id}")
    async def bare(tenant_id: str, authorization: str | None = Header(None)) -> JSONResponse:
        check(authorization)
        return JSONResponse(config, headers={"ETag": '"1"'})

    @app.get("/reference/config/{tenant_id}")
    def reference(tenant_id: str, authorization: str | None = Header(None)) -> dict:
        check(authorization)
        raw = client.get(f"bench-ref:{tenant_id[-3:]}")
        cfg = TenantConfig(**json.loads(raw))
        log.info("config loaded for %s", tenant_id)
        return {"tenant_id": tenant_id, "config": cfg.model_dump()}

    return app


# ---- the client process --------------------------------------------------------------------
def questions() -> list[str]:
    from m11_tenant.rag import load_eval

    return [q.question for q in load_eval()]


def build_requests(kind: str, count: int, prefix: str, path: str) -> list[bytes]:
    head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
    asked = questions() if kind != "get" else []
    stamp = int(time.time() * 1000) % 1_000_000  # fresh questions differ run to run
    requests = []
    for n in range(count):
        tenant = f"{prefix}-{n % TENANTS:03d}"
        if kind == "get":
            requests.append(f"GET {path}/{tenant} HTTP/1.1\r\n{head}\r\n".encode())
            continue
        question = asked[n % len(asked)]
        if kind == "fresh":
            question = f"{question} (case {stamp}-{n})"
        body = json.dumps({"tenant_id": tenant, "query": question})
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


async def _drive(args: argparse.Namespace) -> dict:
    queue = build_requests(args.kind, args.count, args.prefix, args.path)[::-1]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_connection(args.port, queue, started + args.seconds, latencies,
                                       statuses) for _ in range(args.concurrency)))
    return {"latencies": latencies, "statuses": statuses,
            "elapsed": time.perf_counter() - started}


# ---- the orchestrating process ------------------------------------------------------------
def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


SEED = """
import sys
from m11_tenant import open_repository
repo = open_repository(sys.argv[1], redis_url="")
for n in range({tenants}):
    repo.update_config(f"{{sys.argv[2]}}-{{n:03d}}", {{"plan": {plans}[n % 3],
                       "top_k": 3 + n % 8, "alpha": round((n % 5) / 4, 2)}},
                       merge=False, actor="bench")
repo.close()
"""


def seed(tree: Path, url: str, prefix: str) -> None:
    """Seed with the checkout's own code, so each server opens a database it created."""
    subprocess.run([sys.executable, "-c", SEED.format(tenants=TENANTS, plans=PLANS), url,
                    prefix], env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                   cwd=tree)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc (Linux; 0 else).

    Throughput on a shared machine swings with the neighbours' load; the server's own CPU
    time per request does not, so the summary reports both."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0.0
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # the server or one of its workers
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    import httpx

    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start; see {log}:\n{log.read_text()[-2000:]}")


OPTIONAL_STACK = ("httptools", "uvloop")  # uvicorn picks them up whenever importable


def own_stack(tree: Path) -> tuple[str, ...]:
    """The optional server modules a checkout's own ``requirements.txt`` does not install:
    run as that commit shipped, its uvicorn would fall back to h11 and asyncio."""
    try:
        pinned = (tree / "requirements.txt").read_text()
    except OSError:
        return ()
    return tuple(m for m in OPTIONAL_STACK if f"\n{m}==" not in f"\n{pinned}")


def hiding(directory: Path, modules: tuple[str, ...]) -> Path:
    """A ``sitecustomize`` that makes ``modules`` unimportable in the processes started
    with ``directory`` on their path (so uvicorn's ``auto`` choices fall back)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    return directory


class Server:
    """One server process under test (this checkout, the baseline, or the bare app)."""

    def __init__(self, name: str, tree: Path | None, prefix: str, tmp: Path,
                 hide: tuple[str, ...] = ()) -> None:
        self.name, self.tree, self.prefix, self.tmp = name, tree, prefix, tmp
        self.hide = hide  # modules this server must run without (see own_stack)
        self.url = f"sqlite:///{tmp}/{name}.db"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, workers: int, redis_url: str | None) -> None:
        self.port = free_port()
        log = self.tmp / f"{self.name}-w{workers}.log"
        env = {**os.environ, "M11_ADMIN_KEY": ADMIN_KEY, "M11_RATE_QUERIES": "off"}
        env.pop("REDIS_URL", None)
        if self.tree is None:  # the bare app
            cmd = [sys.executable, __file__, "_bare", "--port", str(self.port),
                   "--workers", str(workers)] + (["--redis-url", redis_url] if redis_url else [])
            env["PYTHONPATH"] = str(ROOT)
        else:
            cmd = [sys.executable, "-m", "m11_tenant", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(workers), "--database-url",
                   self.url, "--no-access-log"] + (["--redis-url", redis_url] if redis_url
                                                   else [])
            env["PYTHONPATH"] = str(self.tree)
            if self.hide:
                env["PYTHONPATH"] += os.pathsep + str(hiding(self.tmp / self.name, self.hide))
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"),
                                     stderr=subprocess.STDOUT, cwd=self.tmp)
        wait_ready(self.proc, self.port, log)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def drive(self, kind: str, count: int, seconds: float, concurrency: int,
              path: str = "/config") -> dict:
        cpu_before = cpu_seconds(self.proc.pid)
        out = subprocess.run(
            [sys.executable, __file__, "_client", "--port", str(self.port), "--kind", kind,
             "--count", str(count), "--seconds", str(seconds), "--concurrency",
             str(concurrency), "--prefix", self.prefix, "--path", path],
            capture_output=True, text=True, timeout=seconds + 120, check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        cpu = cpu_seconds(self.proc.pid) - cpu_before
        result = json.loads(out.stdout)
        ordered = sorted(result["latencies"])
        statuses = {int(code): n for code, n in result["statuses"].items()}
        return {"requests": len(ordered), "non200": len(ordered) - statuses.get(200, 0),
                "statuses": statuses, "rps": len(ordered) / result["elapsed"],
                "p50": percentile(ordered, 50), "p99": percentile(ordered, 99),
                "cpu_us": cpu / max(1, len(ordered)) * 1e6}


def server_stack() -> str:
    """What uvicorn runs on here: ``serve`` puts its header deadline on the same parser
    that plain uvicorn picks (the bare app's), so the ratio is the project's own cost."""
    import importlib.util

    import uvicorn

    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__}, {parser} parser, {loop} event loop"


def in_process_figures() -> list[str]:
    """Per-stage timings of a query, embed ms fresh and cached (this checkout only)."""
    from datetime import UTC, datetime

    from m11_tenant.rag import InMemoryLedger, RagPipeline, get_default_index
    from m11_tenant.schema import TenantConfig

    class Configs:
        def get_config(self, _tenant_id: str) -> TenantConfig:
            return TenantConfig(plan="enterprise")

    asked = questions()
    index = get_default_index()
    pipeline = RagPipeline(Configs(), InMemoryLedger(), index=index, generation="offline",
                           clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    stages: dict[str, list[float]] = {}
    fresh, cached = [], []
    for n, q in enumerate(asked * 3):
        t0 = time.perf_counter()
        index.embed_query(f"{q} (probe {n})")
        fresh.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        index.embed_query(q)
        cached.append((time.perf_counter() - t0) * 1e3)
        for stage, ms in pipeline.query(f"t{n % 10}", q).timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    cached = cached[len(asked):]  # the first pass filled the cache

    def p(values: list[float], q: int) -> float:
        return percentile(sorted(values), q)

    lines = ["in process (this checkout): per-stage ms of POST /query's pipeline, "
             f"{len(asked) * 3} queries, p50 / p95"]
    lines += [f"  {stage:<12}{p(v, 50):>8.3f}{p(v, 95):>9.3f}" for stage, v in stages.items()]
    lines.append(f"  embed one question: fresh p50 {p(fresh, 50):.2f} ms (p95 "
                 f"{p(fresh, 95):.2f}), cached p50 {p(cached, 50) * 1e3:.1f} µs")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seconds", type=float, default=4.0, help="per scenario and server")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the servers")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--redis-url", help="a real Redis shared by the workers (default: "
                        "fakeredis with 1 worker; no cache with several)")
    parser.add_argument("--scenarios", default="get,query,fresh")
    parser.add_argument("--baseline-stack", choices=("own", "same"), default="own",
                        help="own: the baseline runs without the optional server modules "
                        "(httptools, uvloop) its requirements.txt does not pin, as it "
                        "shipped; same: on this checkout's stack")
    args = parser.parse_args()
    if args.redis_url and not args.redis_url.startswith("redis://127.0.0.1"):
        raise SystemExit("only a Redis on 127.0.0.1 may be used")
    kinds = args.scenarios.split(",")

    results: dict[tuple[str, str, int], list[dict]] = {}
    baseline_note = ""
    with tempfile.TemporaryDirectory(prefix="m11-bench-") as tmp_name:
        tmp = Path(tmp_name)
        servers = [Server("this", ROOT, "bench", tmp)]
        if args.baseline:
            tree = args.baseline.resolve()
            hide = own_stack(tree) if args.baseline_stack == "own" else ()
            servers.append(Server("baseline", tree, "base", tmp, hide))
            baseline_note = (f"baseline {tree.name} on its own requirements' stack (without "
                             f"{', '.join(hide)})" if hide else
                             f"baseline {tree.name} on the same stack")
        for server in servers:
            seed(server.tree, server.url, server.prefix)
        bare = Server("bare", None, "bench", tmp)
        for workers in [int(w) for w in args.workers.split(",")]:
            running = [*servers, bare] if "get" in kinds else servers
            try:
                for server in running:
                    server.start(workers, args.redis_url)
                    if server is not bare:  # every worker loads its index and tokenizer
                        server.drive("query", 20 * workers, 120, 4 * workers)
                    server.drive("get", 500, 30, 8)
                    if server is bare:  # the reference's Redis connections, too
                        server.drive("get", 500, 30, 8, "/reference/config")
                for _ in range(args.rounds):
                    for kind in kinds:
                        plays = [(s.name, s, "/config") for s in servers]
                        if kind == "get":
                            plays += [("bare", bare, "/config"),
                                      ("reference", bare, "/reference/config")]
                        count = 200_000 if kind == "get" else 20_000
                        for name, server, path in plays:
                            results.setdefault((kind, name, workers), []).append(
                                server.drive(kind, count, args.seconds, args.concurrency,
                                             path))
            finally:
                for server in running:
                    server.stop()

    if args.redis_url:  # leave the shared Redis as we found it
        import redis

        client = redis.Redis.from_url(args.redis_url)
        for pattern in ("m11:*bench-*", "m11:*base-*", "bench-ref:*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
    cache = f"Redis {args.redis_url}" if args.redis_url else "fakeredis (1 worker) / no cache (2+)"
    print(f"m11_tenant HTTP load: {TENANTS} tenants, SQLite, {cache}, {args.concurrency} "
          f"keep-alive connections, {args.seconds:g} s per run, {args.rounds} rounds "
          f"alternating the servers; {os.cpu_count()} CPUs shared with the load generator "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"{'scenario':<34}{'server':<11}{'workers':>7}{'req/s':>8}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'non-200':>8}{'CPU µs/req':>11}  req/s per round")
    for (kind, name, workers), runs in results.items():
        label = dict(SCENARIOS)[kind]
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs) * 1e3
        p99 = statistics.median(r["p99"] for r in runs) * 1e3
        bad = sum(r["non200"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        print(f"{label:<34}{name:<11}{workers:>7}{rps:>8.0f}{p50:>8.1f}{p99:>8.1f}{bad:>8}"
              f"{cpu:>11.0f}  " + ", ".join(f"{r['rps']:.0f}" for r in runs))
    print(f"server stack: {server_stack()} for this checkout and the bare app"
          + (f"; {baseline_note}" if args.baseline else ""))
    print("ratios: req/s (median over rounds of the same-round ratio), and capacity = the "
          "inverse ratio of server CPU per request (less sensitive to the neighbours' load):")
    for (kind, name, workers), runs in results.items():
        for against in ("bare", "baseline", "reference"):
            other = results.get((kind, against, workers))
            if other is None or name in ("bare", "reference", against) or (
                    against == "reference" and name == "baseline"):
                continue
            pairs = list(zip(runs, other, strict=True))
            ratio = statistics.median(a["rps"] / b["rps"] for a, b in pairs)
            capacity = statistics.median(b["cpu_us"] / a["cpu_us"] for a, b in pairs
                                         if a["cpu_us"] > 0) if pairs[0][0]["cpu_us"] else 0
            print(f"  {dict(SCENARIOS)[kind]:<34}{workers} worker(s): {name} / {against} "
                  f"= {ratio:.2f}x req/s, {capacity:.2f}x capacity")
    for line in in_process_figures():
        print(line)
    print("reproduce: python bench/http_load.py " + " ".join(sys.argv[1:]))


def _sub_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("_client", "_bare"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--kind", default="get")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--path", default="/config")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    if args.mode == "_client":
        print(json.dumps(asyncio.run(_drive(args))))
        return
    import uvicorn

    os.environ["BENCH_REDIS_URL"] = args.redis_url or ""
    uvicorn.run("bench.http_load:_bare_factory", factory=True, host="127.0.0.1",
                port=args.port, workers=args.workers, access_log=False, log_level="warning")


def _bare_factory() -> FastAPI:
    app = bare_app(os.environ.get("BENCH_REDIS_URL") or None)
    app.get("/health")(lambda: {"ok": True})
    return app


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_client", "_bare"):
        _sub_main()
    else:
        main()
