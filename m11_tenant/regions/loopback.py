"""A multi-region deployment on loopback: a private ``redis-server`` and one
``python -m m11_tenant serve --region`` process per region.

What the process-level crash tests and ``bench/replication.py --processes`` run, and a way
to try three regions on one machine. Everything listens on free loopback ports; the Redis
is private (never the shared one), so it can be killed and restarted at will. It keeps an
append-only file fsynced on every write: a stream entry Redis has acknowledged survives a
``kill -9`` of Redis, as it must in production for nothing to be lost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import redis

from m11_tenant.errors import ServiceUnavailableError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding m11_tenant/


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A free loopback port for a server that may be killed and restarted on it.

    Taken below the kernel's ephemeral range, never from it (port 0 would): while a server
    is down, its ephemeral port can become the local port of any client connection on the
    machine, and the restart then fails with "address already in use".
    """
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default; other systems start theirs higher still
    picker = random.SystemRandom()
    for _ in range(1000):
        port = picker.randrange(max(1024, low - 12_000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another candidate
            return port
    raise ServiceUnavailableError(f"no free loopback port below {low} for a region server")


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """A private ``redis-server`` on a free loopback port, data in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory, self.port = Path(directory), port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart, on the same port and files) and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailableError(
                "redis-server is not on PATH: install Debian's redis-server package (or "
                "point REDIS_URL at a Redis every region reaches)")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.RedisError as exc:  # not listening yet, or still loading its file
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"redis-server did not start on port {self.port}: {exc}; see "
                        f"{self.directory / 'redis.log'}") from exc
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds."""
        _end(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _end(self.process, signal.SIGTERM)


class RegionServer:
    """One region's API process (``serve --region``) on a free loopback port."""

    def __init__(self, name: str, regions: Sequence[str], *, redis_url: str,
                 database_url: str, admin_key: str, log_dir: Path,
                 strategy: str = "field-merge", port: int | None = None,
                 env: Mapping[str, str] | None = None):
        self.name, self.port = name, port or free_port()
        self.log_path = Path(log_dir) / f"region-{name}.log"
        self.admin_key = admin_key
        self.command = [sys.executable, "-m", "m11_tenant", "serve", "--region", name,
                        "--regions", ",".join(regions), "--strategy", strategy,
                        "--port", str(self.port), "--no-access-log"]
        self.env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                    "M11_ADMIN_KEY": admin_key, "PYTHONPATH": str(PACKAGE_ROOT),
                    **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=PACKAGE_ROOT,
                                            stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until ``/health`` answers (the apply loop runs from then on)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                raise ServiceUnavailableError(
                    f"region {self.name} exited at start; its output:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"region {self.name} did not answer within "
                                              f"{timeout:.0f} s:\n{self.output()}")
            time.sleep(0.05)

    def start(self, timeout: float = 90.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown code runs."""
        _end(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _end(self.process, signal.SIGTERM)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class LoopbackRegions:
    """A private Redis and one region process per name, on SQLite files (default) or the
    PostgreSQL databases/schemas of ``database_urls``; a context manager that stops all."""

    def __init__(self, names: Sequence[str], directory: Path, *, strategy: str = "field-merge",
                 admin_key: str = "loopback-admin-key-0123456789abcdef",
                 database_urls: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None):
        self.directory = Path(directory)
        self.redis = RedisServer(self.directory / "redis")
        urls = database_urls or {name: f"sqlite:///{self.directory / f'{name}.db'}"
                                 for name in names}
        self.regions = {name: RegionServer(name, names, redis_url=self.redis.url,
                                           database_url=urls[name], admin_key=admin_key,
                                           log_dir=self.directory, strategy=strategy, env=env)
                        for name in names}

    def __getitem__(self, name: str) -> RegionServer:
        return self.regions[name]

    def start(self) -> LoopbackRegions:
        self.redis.start()
        for region in self.regions.values():  # start together: imports dominate start-up
            region.spawn()
        for region in self.regions.values():
            region.wait_ready()
        return self

    def stop(self) -> None:
        for region in self.regions.values():
            region.stop()
        self.redis.stop()

    def __enter__(self) -> LoopbackRegions:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _end(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
