"""What the security checks cost on every request: key authentication and rate counting.

A tenant key is re-read from the database every 0.5 s (so a revocation reaches every
process within a second); in between, a request costs a hash and a dict lookup. A rate
limit is one Redis round trip (``SET NX`` + ``INCR`` + ``PTTL`` in one pipeline), or an
in-process counter when Redis does not answer.

    python bench/auth_paths.py [--redis-url redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fakeredis
import redis

from m11_tenant.settings import Rate
from m11_tenant.store import Change, open_store
from m11_tenant.web.auth import Authenticator, hash_key, new_admin_key, new_tenant_key
from m11_tenant.web.ratelimit import AuthThrottle, Counters, RateLimiter

RUNS, CALLS = 5, 20_000


def median_us(fn: Callable[[int], object], calls: int = CALLS) -> float:
    """The median over RUNS runs of the mean time per call, in microseconds."""
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for n in range(calls):
            fn(n)
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", help="also time the rate limiter on this Redis")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        key_id, key = new_tenant_key()
        store.add_api_key("bench-co", key_id, hash_key(key), Change())
        admin = new_admin_key()
        auth = Authenticator(store, admin)
        tenant_header, admin_header = f"Bearer {key}", f"Bearer {admin}"
        print(f"authenticate, tenant key (0.5 s cache): "
              f"{median_us(lambda _n: auth.authenticate(tenant_header)):.2f} µs/call")
        uncached = Authenticator(store, admin, cache_seconds=0.0)
        print(f"authenticate, tenant key (database read every call): "
              f"{median_us(lambda _n: uncached.authenticate(tenant_header), 2000):.1f} µs/call")
        print(f"authenticate, admin key: "
              f"{median_us(lambda _n: auth.authenticate(admin_header)):.2f} µs/call")
        if args.redis_url:
            throttled = Authenticator(store, admin, throttle=AuthThrottle(
                Counters(redis.Redis.from_url(args.redis_url), prefix="m11bench:"),
                Rate(10, 60)))
            cost = median_us(lambda _n: throttled.authenticate(tenant_header, "127.0.0.1"))
            print(f"authenticate, tenant key, throttle on {args.redis_url}: {cost:.2f} µs/call")
        store.close()
    rate = Rate(10**9, 3600)
    clients: list[tuple[str, redis.Redis | None]] = [
        ("in process (no Redis)", None), ("fakeredis", fakeredis.FakeRedis())]
    if args.redis_url:
        clients.append((args.redis_url, redis.Redis.from_url(args.redis_url)))
    for name, client in clients:
        limiter = RateLimiter(Counters(client, prefix="m11bench:"))
        cost = median_us(lambda n, lim=limiter: lim.hit("config_write", f"t-{n % 50}", rate),
                         3000)
        print(f"rate limit hit, {name}: {cost:.1f} µs/call")
        if client is not None:
            for stale in client.scan_iter("m11bench:*"):
                client.delete(stale)
    print("reproduce: python bench/auth_paths.py" +
          (f" --redis-url {args.redis_url}" if args.redis_url else ""))


if __name__ == "__main__":
    main()
