"""Slow clients against ``serve``: are slow-header connections cut off, and does /health stay fast?

Starts ``python -m m11_tenant serve`` on a free loopback port (fresh SQLite database,
in-process fakeredis), opens N connections that each send a request line and then one
header line every ``--interval`` seconds (a "slowloris"), and meanwhile times ``GET
/health`` on fresh connections every 0.25 s. It reports how many slow connections the
server closed within ``--within`` seconds, when, and the /health latencies during the
attack. ``--stock`` runs plain uvicorn (no header deadline) for comparison. Only
127.0.0.1 is contacted; the run is bounded by ``--seconds``.

    python bench/slow_clients.py [--connections 60] [--interval 10] [--within 30]
                                 [--seconds 40] [--header-timeout 10] [--stock]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, db: Path, header_timeout: float, stock: bool) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "M11_ADMIN_KEY": "bench-admin-key",
           "M11_HEADER_TIMEOUT": str(header_timeout)}
    env.pop("REDIS_URL", None)
    if stock:
        cmd = [sys.executable, "-m", "uvicorn", "m11_tenant.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    else:
        cmd = [sys.executable, "-m", "m11_tenant", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def health_once(port: int) -> float | None:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    except (OSError, TimeoutError):
        return None
    return time.perf_counter() - started if data.startswith(b"HTTP/1.1 200") else None


async def wait_until_up(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await health_once(port) is not None:
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not answer /health")


async def slow_client(port: int, interval: float, t0: float, until: float) -> float | None:
    """Seconds after t0 at which the server closed the connection (None: still open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    n = 0
    try:
        while time.monotonic() < until:
            try:
                chunk = await asyncio.wait_for(reader.read(1024),
                                               min(interval, until - time.monotonic()))
            except TimeoutError:
                n += 1
                writer.write(f"X-Slow-{n}: 1\r\n".encode())
                await writer.drain()
                continue
            if chunk == b"":
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    finally:
        writer.close()
    return None


async def pinger(port: int, until: float, latencies: list[float], failures: list[int]) -> None:
    while time.monotonic() < until:
        took = await health_once(port)
        if took is None:
            failures.append(1)
        else:
            latencies.append(took)
        await asyncio.sleep(0.25)


async def attack(port: int, args: argparse.Namespace) -> tuple[list[float | None], list[float],
                                                                int]:
    t0 = time.monotonic()
    until = t0 + args.seconds
    latencies: list[float] = []
    failures: list[int] = []
    ping = asyncio.create_task(pinger(port, until, latencies, failures))
    closed = await asyncio.gather(*(slow_client(port, args.interval, t0, until)
                                    for _ in range(args.connections)))
    ping.cancel()
    return list(closed), latencies, len(failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=60)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--within", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--stock", action="store_true", help="plain uvicorn, no deadline")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, Path(tmp) / "bench.db", args.header_timeout, args.stock)
        try:
            asyncio.run(wait_until_up(port))
            closed, latencies, failed = asyncio.run(attack(port, args))
        finally:
            server.terminate()
            server.wait(10)
    times = sorted(t for t in closed if t is not None)
    in_time = sum(1 for t in times if t <= args.within)
    mode = "plain uvicorn (no header deadline)" if args.stock else \
        f"serve, header deadline {args.header_timeout:g} s"
    print(f"server: {mode}; {args.connections} slow-header connections, one header line "
          f"every {args.interval:g} s, observed for {args.seconds:g} s")
    print(f"closed by the server within {args.within:g} s: {in_time}/{args.connections}; "
          f"still open at the end: {args.connections - len(times)}")
    if times:
        print(f"closed after: min {times[0]:.1f} s, median {statistics.median(times):.1f} s, "
              f"max {times[-1]:.1f} s")
    if latencies:
        q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
        print(f"/health during the attack: {len(latencies)} requests, {failed} failed; "
              f"p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms")
    flags = " --stock" if args.stock else ""
    print(f"reproduce: python bench/slow_clients.py --connections {args.connections} "
          f"--interval {args.interval:g} --within {args.within:g} --seconds {args.seconds:g} "
          f"--header-timeout {args.header_timeout:g}{flags}")


if __name__ == "__main__":
    main()
