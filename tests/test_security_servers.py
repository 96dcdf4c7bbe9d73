"""Issue 12 across real server processes: two ``python -m m11_tenant serve`` processes on
one database (and one Redis in the services variant), driven over loopback by real
threads. Revocation and sign-out reach the other process within a second; failed
authentication is throttled (across servers with Redis, per server without); rate limits
hold in process when Redis dies.

Embedded variant: one SQLite file, no shared Redis (``REDIS_URL=``), always run. Services
variant (marked ``services``): PostgreSQL (a schema of its own) and the real Redis; the
Redis-dies test (also ``services``) starts and kills a redis-server of its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from api_support import free_port

from tests.conftest import REAL_DATABASE_URL, REAL_REDIS_URL, postgres_schema

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "m11a_" + "servers-admin-key-0123456789-abcdefXYZ"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
AUTH_LIMIT = 5
START_TIMEOUT = 60.0


@dataclass
class Server:
    base: str
    proc: subprocess.Popen
    log: Path


@contextmanager
def serve(database_url: str, redis_url: str, workdir: Path, count: int = 2,
          **env: str) -> Iterator[list[Server]]:
    """``count`` serve processes on one database and Redis, started together."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("M11_")}
    environ.update(PYTHONPATH=str(ROOT), DATABASE_URL=database_url, REDIS_URL=redis_url,
                   M11_ADMIN_KEY=ADMIN_KEY, M11_AUTH_FAILURES=f"{AUTH_LIMIT}/hour",
                   M11_RATE_CONFIG_WRITES="10/hour", **env)
    servers = []
    try:
        for n in range(count):
            port, log = free_port(), workdir / f"serve-{uuid.uuid4().hex[:6]}-{n}.log"
            with log.open("w") as sink:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "m11_tenant", "serve", "--port", str(port),
                     "--no-access-log"], cwd=workdir, env=environ, stdout=sink,
                    stderr=subprocess.STDOUT)
            servers.append(Server(f"http://127.0.0.1:{port}", proc, log))
        deadline = time.monotonic() + START_TIMEOUT
        for server in servers:
            while True:
                try:
                    if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not come up: {server.log.read_text()}")
                time.sleep(0.1)
        yield servers
    finally:
        for server in servers:
            server.proc.terminate()
        for server in servers:
            server.proc.wait(timeout=20)


BACKENDS = ["embedded", pytest.param("services", marks=pytest.mark.services)]


@pytest.fixture(scope="module", params=BACKENDS)
def pair(request, tmp_path_factory) -> Iterator[tuple[str, list[Server]]]:
    workdir = tmp_path_factory.mktemp("servers")
    with ExitStack() as stack:
        if request.param == "embedded":
            database, redis_url = f"sqlite:///{workdir / 'shared.db'}", ""
        else:
            database = stack.enter_context(postgres_schema(REAL_DATABASE_URL))
            redis_url = REAL_REDIS_URL
        yield request.param, stack.enter_context(serve(database, redis_url, workdir))


def from_address(address: str | None = None) -> httpx.Client:
    """A client whose connections come from its own loopback address (127.x.y.z), so each
    test's failed-auth counters are its own, even on a shared Redis."""
    address = address or f"127.{random.randint(1, 254)}.{random.randint(1, 254)}." \
                         f"{random.randint(2, 254)}"
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def new_key(base: str, tenant_id: str) -> tuple[str, dict[str, str]]:
    body = httpx.post(f"{base}/tenants/{tenant_id}/keys", headers=ADMIN).json()
    return body["key_id"], {"Authorization": f"Bearer {body['key']}"}


def console_sign_in(client: httpx.Client, base: str, key: str) -> str:
    page = client.get(f"{base}/console/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    response = client.post(f"{base}/console/login", data={"login_nonce": nonce, "key": key})
    assert response.status_code == 303, response.text
    return response.cookies["m11_console"]


def console_status(base: str, cookie: str, path: str) -> int:
    return httpx.get(f"{base}{path}", cookies={"m11_console": cookie}).status_code


def test_a_key_revoked_on_one_server_is_refused_by_the_other_within_a_second(pair, tenant_id):
    _, (a, b) = pair
    key_id, header = new_key(a.base, tenant_id)
    cookie = console_sign_in(from_address(), b.base, header["Authorization"].split()[1])
    with ThreadPoolExecutor(4) as pool:  # warm b's view of the key from several threads
        codes = list(pool.map(lambda _: httpx.get(f"{b.base}/config/{tenant_id}",
                                                  headers=header).status_code, range(8)))
    assert codes == [200] * 8
    assert console_status(b.base, cookie, f"/console/t/{tenant_id}") == 200
    revoked = httpx.delete(f"{a.base}/tenants/{tenant_id}/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200
    time.sleep(1.0)  # the bound: every process refuses it one second later
    refused = from_address().get(f"{b.base}/config/{tenant_id}", headers=header)
    assert refused.status_code == 401 and "revoked" in refused.text
    assert console_status(b.base, cookie, f"/console/t/{tenant_id}") == 303  # to sign-in


def test_signing_out_on_one_server_ends_the_session_on_the_other(pair):
    _, (a, b) = pair
    client = from_address()
    cookie = console_sign_in(client, a.base, ADMIN_KEY)
    assert console_status(b.base, cookie, "/console") == 200  # one session, both servers
    page = httpx.get(f"{b.base}/console", cookies={"m11_console": cookie}).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    out = httpx.post(f"{b.base}/console/logout", data={"csrf": csrf},
                     cookies={"m11_console": cookie})
    assert out.status_code == 303
    assert console_status(a.base, cookie, "/console") == 303


def test_concurrent_guesses_get_exactly_the_allowed_401s(pair, tenant_id):
    backend, (a, b) = pair
    guesser = from_address()
    key_id, header = new_key(a.base, tenant_id)

    def guess(n: int) -> int:
        server = (a, b)[n % 2]
        wrong = {"Authorization": f"Bearer m11k_{n:04d}_wrong"}
        return guesser.get(f"{server.base}/config/{tenant_id}", headers=wrong).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(guess, range(40)))
    # With Redis both servers count together; without it, each server counts on its own.
    allowed = AUTH_LIMIT if backend == "services" else 2 * AUTH_LIMIT
    assert codes == {401: allowed, 429: 40 - allowed}
    for server in (a, b):
        refused = guesser.get(f"{server.base}/config/{tenant_id}", headers=header)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        bystander = from_address().get(f"{server.base}/config/{tenant_id}", headers=header)
        assert bystander.status_code == 200
    assert key_id


@pytest.mark.services  # needs a redis-server of its own to kill (as in test_services.py)
def test_rate_limits_hold_per_process_when_redis_dies(tmp_path, tenant_id):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (the services tests need it)"
    port = free_port()
    redis_proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        probe = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                if probe.ping():
                    break
            time.sleep(0.05)
        else:
            pytest.fail("our redis-server did not start")
        redis_url = f"redis://127.0.0.1:{port}/0"
        with serve(f"sqlite:///{tmp_path / 'one.db'}", redis_url, tmp_path, count=1) as (s,):
            _, header = new_key(s.base, tenant_id)
            redis_proc.terminate()
            redis_proc.wait(timeout=10)

            def write(n: int) -> int:
                return httpx.post(f"{s.base}/config/{tenant_id}", headers=header, timeout=30,
                                  json={"config": {"top_k": 1 + n % 5}}).status_code

            with ThreadPoolExecutor(5) as pool:
                codes = Counter(pool.map(write, range(15)))
            assert codes == {200: 10, 429: 5}
            health = httpx.get(f"{s.base}/health").json()
            assert health["status"] == "degraded"
    finally:
        if redis_proc.poll() is None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
