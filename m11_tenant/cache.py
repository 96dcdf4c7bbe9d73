"""The Redis cache in front of the store: one key per tenant, a TTL, and a fallback copy.

Redis is an optimisation, never a dependency: every Redis error is caught here, counted,
and turned into a miss, so a Redis outage makes reads slower, not wrong. A second key
per tenant, the *last known good* copy, lives much longer (24 h by default) and is what
reads fall back to while the database is down.
"""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

CachePayload = dict[str, Any]  # {"version": int, "config": dict | None, "updated_at": ...}


def make_redis_client(url: str | None) -> redis.Redis | None:
    """``None`` -> a private in-process fakeredis; ``""`` -> no cache; else a real Redis.

    The fakeredis server is private to the caller on purpose: two repositories on two
    databases sharing one fake server would serve each other's tenants (failure mode #5).
    Pass the same client to both when sharing *is* the point.
    """
    if url is None:
        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    if url == "":
        return None
    # One quick retry, no backoff: a config read must not wait seconds for a dead Redis.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5,
                                retry=Retry(NoBackoff(), 1))


class ConfigCache:
    """Tenant configs in Redis, with hit/miss counters and a health flag.

    After a Redis error the cache stays out of the way for ``pause_after_error`` seconds
    (every call is a miss without touching the network), so an outage costs one timeout
    per pause rather than one per request.
    """

    def __init__(self, client: redis.Redis | None, *, ttl: int = 300,
                 last_known_good_ttl: int = 86_400, prefix: str = "m11:",
                 pause_after_error: float = 2.0):
        self.client, self.ttl, self.lkg_ttl, self.prefix = client, ttl, last_known_good_ttl, prefix
        self.pause_after_error = pause_after_error
        self.hits = self.misses = self.errors = 0
        self.last_error: str | None = None
        self._paused_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def key(self, tenant_id: str) -> str:
        return f"{self.prefix}tenant_config:{tenant_id}"

    def last_known_good_key(self, tenant_id: str) -> str:
        return f"{self.prefix}last_known_good:{tenant_id}"

    def get(self, tenant_id: str) -> CachePayload | None:
        raw = self._call("get", self.key(tenant_id))
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(raw)

    def put(self, tenant_id: str, payload: CachePayload) -> None:
        """Cache a payload; one with a config also refreshes the last-known-good copy."""
        data = json.dumps(payload)
        self._call("set", self.key(tenant_id), data, ex=self.ttl)
        if payload.get("config") is not None:
            self._call("set", self.last_known_good_key(tenant_id), data, ex=self.lkg_ttl)

    def get_last_known_good(self, tenant_id: str) -> CachePayload | None:
        raw = self._call("get", self.last_known_good_key(tenant_id))
        return None if raw is None else json.loads(raw)

    def invalidate(self, tenant_id: str) -> bool:
        """Delete the tenant's cached entry; False when Redis could not be told."""
        if not self.enabled:
            return True
        before = self.errors
        self._call("delete", self.key(tenant_id))
        return self.errors == before

    def ping(self) -> bool:
        """Ask Redis now, even while paused; success ends the pause."""
        if not self.enabled:
            return False
        self._paused_until = 0.0
        before = self.errors
        self._call("ping")
        return self.errors == before

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            return None
        if self._paused_until and time.monotonic() < self._paused_until:
            self.errors += 1
            return None
        try:
            result = getattr(self.client, method)(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._paused_until = time.monotonic() + self.pause_after_error
            return None
        self.last_error, self._paused_until = None, 0.0
        return result
