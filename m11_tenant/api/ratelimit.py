"""Per-tenant rate limits in Redis: fixed windows, one counter key per tenant and window.

``INCR`` + ``EXPIRE`` in one pipeline is atomic enough for a limit (two processes can't
both see the same count), and the key expires with its window, so nothing needs cleaning.
Redis is an optimisation here as in the cache: if it errors, the request is allowed (the
durable limits, the plan's quota and budget in the usage ledger, still hold) and the
error is counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import redis

from m11_tenant.api.errors import HttpError
from m11_tenant.api.settings import Rate


class RateLimiter:
    """``hit(kind, tenant_id, rate)`` counts one request and raises 429 past the limit."""

    def __init__(self, client: redis.Redis, *, prefix: str = "m11:",
                 clock: Callable[[], float] = time.time):
        self.client, self.prefix, self.clock = client, prefix, clock
        self.errors = 0

    def hit(self, kind: str, tenant_id: str, rate: Rate | None) -> None:
        if rate is None:
            return
        now = self.clock()
        window = int(now // rate.period)
        key = f"{self.prefix}rl:{kind}:{tenant_id}:{window}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, rate.period + 1)
            count = int(pipe.execute()[0])
        except (redis.RedisError, OSError):
            self.errors += 1
            return
        if count > rate.limit:
            retry_after = max(1, math.ceil((window + 1) * rate.period - now))
            raise HttpError(
                429, "rate_limited",
                f"tenant {tenant_id!r} has used its {rate.limit} {kind.replace('_', ' ')} "
                f"request(s) per {_period_name(rate.period)}; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


def _period_name(seconds: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}.get(seconds,
                                                                       f"{seconds} s")
