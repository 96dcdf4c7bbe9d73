"""Rate limits and the failed-authentication throttle: counters in Redis, or in process.

Every limit here is a counter that expires with its window. ``SET NX EX`` + ``INCR`` + ``PTTL``
in one pipeline is atomic enough for a limit (two processes never see the same count), and
the key expires by itself, so nothing needs cleaning. Redis is shared by every worker and
server, so a limit holds across them. When Redis does not answer, the counters fall back to
this process's memory (:class:`LocalCounters`) instead of letting every request through: a
per-worker limit is weaker than a shared one (N workers allow N times the limit) but far
better than none. After an error Redis is left alone for ``pause`` seconds, so an outage
costs one timeout per pause, not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from m11_tenant.settings import Rate
from m11_tenant.web.errors import HttpError

log = logging.getLogger("m11_tenant.auth")
REDIS_PAUSE_SECONDS = 2.0
MAX_LOCAL_KEYS = 100_000
#: How long a process trusts that an address is not cooling down before asking Redis again.
CLEAR_SECONDS = 1.0


class LocalCounters:
    """Expiring counters in this process: the fallback when Redis does not answer.

    Bounded: past ``max_keys`` live counters, expired ones are dropped first, then the
    oldest, so a flood of distinct client addresses cannot grow memory without limit.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_LOCAL_KEYS):
        self._clock, self._max_keys = clock, max_keys
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, ttl: float) -> tuple[int, float]:
        now = self._clock()
        with self._lock:
            count, ends = self._counts.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + ttl
            self._counts[key] = (count + 1, ends)
            if len(self._counts) > self._max_keys:
                self._shrink(now)
            return count + 1, ends - now

    def peek(self, key: str) -> tuple[int, float]:
        now = self._clock()
        with self._lock:
            count, ends = self._counts.get(key, (0, 0.0))
        return (count, ends - now) if ends > now else (0, 0.0)

    def _shrink(self, now: float) -> None:
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        while len(self._counts) > self._max_keys:
            self._counts.pop(next(iter(self._counts)))


class Counters:
    """Expiring counters in Redis while it answers, in :class:`LocalCounters` otherwise.

    ``hit(key, ttl)`` adds one and returns ``(count, seconds until the window ends)``; the
    window starts with the first hit. ``peek`` reads without counting.
    """

    def __init__(self, client: redis.Redis | None, *, prefix: str = "m11:",
                 pause: float = REDIS_PAUSE_SECONDS):
        self.client, self.prefix, self.pause = client, prefix, pause
        self.local = LocalCounters()
        self.errors = 0
        self._paused_until = 0.0

    def hit(self, key: str, ttl: float) -> tuple[int, float]:
        if self._redis_usable():
            try:
                pipe = self.client.pipeline()  # type: ignore[union-attr]
                pipe.set(self.prefix + key, 0, px=max(1, int(ttl * 1000)), nx=True)
                pipe.incr(self.prefix + key)
                pipe.pttl(self.prefix + key)
                _, count, left = pipe.execute()
                return int(count), max(0, int(left)) / 1000
            except (redis.RedisError, OSError):
                self._failed()
        return self.local.hit(key, ttl)

    def peek(self, key: str) -> tuple[int, float]:
        if self._redis_usable():
            try:
                pipe = self.client.pipeline()  # type: ignore[union-attr]
                pipe.get(self.prefix + key)
                pipe.pttl(self.prefix + key)
                count, left = pipe.execute()
                return int(count or 0), max(0, int(left)) / 1000
            except (redis.RedisError, OSError, ValueError):
                self._failed()
        return self.local.peek(key)

    def _redis_usable(self) -> bool:
        return self.client is not None and time.monotonic() >= self._paused_until

    def _failed(self) -> None:
        self.errors += 1
        self._paused_until = time.monotonic() + self.pause


class RateLimiter:
    """``hit(kind, tenant_id, rate)`` counts one request and raises 429 past the limit.

    Windows are aligned to the clock (``10/hour`` resets on the hour), so every worker and
    server counts in the same window.
    """

    def __init__(self, counters: Counters, *, clock: Callable[[], float] = time.time):
        self.counters, self.clock = counters, clock

    def hit(self, kind: str, tenant_id: str, rate: Rate | None) -> None:
        if rate is None:
            return
        now = self.clock()
        window = int(now // rate.period)
        count, _ = self.counters.hit(f"rl:{kind}:{tenant_id}:{window}", rate.period + 1)
        if count > rate.limit:
            retry_after = max(1, math.ceil((window + 1) * rate.period - now))
            raise HttpError(
                429, "rate_limited",
                f"tenant {tenant_id!r} has used its {rate.limit} {kind.replace('_', ' ')} "
                f"request(s) per {_period_name(rate.period)}; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


class AuthThrottle:
    """Failed authentications per client address: past ``rate.limit`` failures in a window
    (which starts at the first failure), that address gets 429 for the rest of the window,
    whatever key it sends — a correct guess must not answer differently from a wrong one.

    Other addresses are not affected; a failure is logged as a warning when it starts a
    cool-down. What this process learns about an address is kept: a cool-down until it
    ends, a clean record for :data:`CLEAR_SECONDS`, so a valid request costs a Redis
    round trip at most once a second per address (a cool-down started on another server
    is seen here within that second; a failure here sees it at once).
    """

    def __init__(self, counters: Counters, rate: Rate | None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.counters, self.rate, self._clock = counters, rate, clock
        self._blocked: dict[str, float] = {}  # address -> end of its cool-down
        self._clear: dict[str, float] = {}    # address -> until when it is known clean

    def check(self, client: str) -> None:
        """Raise 429 if ``client`` is cooling down."""
        if self.rate is None:
            return
        now = self._clock()
        ends = self._blocked.get(client)
        if ends is not None and ends > now:
            raise self._refusal(ends - now)
        if self._clear.get(client, 0.0) > now:
            return
        count, left = self.counters.peek(_auth_key(client))
        if count >= self.rate.limit:
            self._remember(self._blocked, client, now + left, now)
            raise self._refusal(left)
        self._remember(self._clear, client, now + CLEAR_SECONDS, now)

    def known_clean(self, client: str | None) -> bool:
        """True when ``client`` is known, without asking Redis, not to be cooling down (the
        hot path's test: otherwise :meth:`check` decides, off the event loop)."""
        if self.rate is None or client is None:
            return True
        now = self._clock()
        return self._clear.get(client, 0.0) > now and self._blocked.get(client, 0.0) <= now

    def failed(self, client: str) -> None:
        """Count one failed authentication from ``client``; raise 429 instead of the 401 when
        it is past the limit. Each failure's answer comes from its own atomic count, so N
        concurrent guesses get exactly ``rate.limit`` 401s between them, however they race.
        """
        if self.rate is None:
            return
        count, left = self.counters.hit(_auth_key(client), self.rate.period)
        if count >= self.rate.limit:
            now = self._clock()
            self._clear.pop(client, None)
            self._remember(self._blocked, client, now + left, now)
        if count == self.rate.limit:
            log.warning("client %r failed to authenticate %d times within %d s; refused "
                        "with 429 for %d s", client[:100], count, self.rate.period,
                        math.ceil(left))
        if count > self.rate.limit:
            raise self._refusal(left)

    @staticmethod
    def _remember(table: dict[str, float], client: str, until: float, now: float) -> None:
        if len(table) >= MAX_LOCAL_KEYS:  # bounded: drop what has ended, else start over
            for stale in [c for c, t in table.items() if t <= now]:
                del table[stale]
            if len(table) >= MAX_LOCAL_KEYS:
                table.clear()
        table[client] = until

    def _refusal(self, left: float) -> HttpError:
        retry_after = max(1, math.ceil(left))
        return HttpError(429, "rate_limited",
                         f"too many failed sign-ins or API keys from this address; retry in "
                         f"{retry_after} s with the right key",
                         headers={"Retry-After": str(retry_after)})


def _auth_key(client: str) -> str:
    return f"authfail:{client[:100]}"


def _period_name(seconds: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}.get(seconds,
                                                                       f"{seconds} s")
