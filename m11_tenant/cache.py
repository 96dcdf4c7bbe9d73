"""The caches in front of the store: a near cache in process, and Redis behind it.

Redis is an optimisation, never a dependency: every Redis error is caught here, counted,
and turned into a miss, so a Redis outage makes reads slower, not wrong. A second key
per tenant, the *last known good* copy, lives much longer (24 h by default) and is what
reads fall back to while the database is down.

The near cache holds already-validated, immutable config objects in process: a hit is a
dict lookup, with no network round trip, no JSON parse and no validation. It stays fresh
across processes because every write publishes the tenant id on a Redis pub/sub channel
and every process's :class:`InvalidationListener` drops that tenant from its near cache.
A listener that loses its subscription cannot know what it missed, so the near cache is
switched off until the subscription is back, and emptied when it is; the TTL is only the
backstop.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
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
    def paused(self) -> bool:
        """True while calls are skipped after an error."""
        return bool(self._paused_until) and time.monotonic() < self._paused_until

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

    @property
    def channel(self) -> str:
        """The pub/sub channel every write announces its tenant id on."""
        return f"{self.prefix}invalidations"

    def put(self, tenant_id: str, payload: CachePayload) -> None:
        """Cache a payload; one with a config also refreshes the last-known-good copy."""
        data = json.dumps(payload)

        def both(pipe: Any) -> None:
            pipe.set(self.key(tenant_id), data, ex=self.ttl)
            if payload.get("config") is not None:
                pipe.set(self.last_known_good_key(tenant_id), data, ex=self.lkg_ttl)

        self._pipeline(both)

    def get_last_known_good(self, tenant_id: str) -> CachePayload | None:
        raw = self._call("get", self.last_known_good_key(tenant_id))
        return None if raw is None else json.loads(raw)

    def invalidate(self, tenant_id: str, version: int = 0, origin: str = "") -> bool:
        """Delete the tenant's entry and announce it to every process; False if Redis is down.

        ``version`` (the version just written; 0 after a delete) travels with the
        announcement, so a listener can also refuse an older copy that a slow reader puts
        back into Redis after the delete. ``origin`` names the writer's near cache, which
        was already invalidated and ignores its own echo. It is sent even while the cache
        pauses after an error: a lost invalidation costs more than one more timeout.
        """
        if not self.enabled:
            return True
        self._paused_until = 0.0
        before = self.errors
        message = f"{tenant_id} {version} {origin}"

        def delete_and_publish(pipe: Any) -> None:
            pipe.delete(self.key(tenant_id))
            pipe.publish(self.channel, message)

        self._pipeline(delete_and_publish)
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
        return self._run(lambda client: getattr(client, method)(*args, **kwargs))

    def _pipeline(self, queue: Callable[[Any], None]) -> Any:
        """Send several commands in one round trip (not a transaction)."""

        def send(client: redis.Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            queue(pipe)
            return pipe.execute()

        return self._run(send)

    def _run(self, call: Callable[[redis.Redis], Any]) -> Any:
        if self.client is None:
            return None
        if self._paused_until and time.monotonic() < self._paused_until:
            self.errors += 1
            return None
        try:
            result = call(self.client)
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._paused_until = time.monotonic() + self.pause_after_error
            return None
        self.last_error, self._paused_until = None, 0.0
        return result


class NearCache:
    """A bounded LRU of validated, immutable configs in this process, with a TTL backstop.

    Thread-safe. It serves nothing until :meth:`enable` (the listener calls it once its
    subscription is confirmed), because an entry nobody can invalidate may be stale.

    A reader that missed fetches from Redis or the database, which takes time; a write
    announced meanwhile must win. So a reader takes a :meth:`token` before fetching, and
    :meth:`put` refuses the value if the tenant was invalidated (or the cache cleared)
    since that token, or if the value is older than the newest version announced.

    Args:
        max_entries: how many tenants are kept (least recently used are evicted first);
            a validated ~1 KB config costs about 3.5 KiB (bench/config_resolution.py).
        ttl: seconds an entry may be served without any invalidation (the backstop).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, max_entries: int = 10_000, ttl: float = 300.0, *,
                 clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries, self.ttl, self.clock = max_entries, ttl, clock
        self.id = uuid.uuid4().hex[:12]  # tells this process's own announcements apart
        self.enabled = False
        self.hits = self.misses = self.evictions = self.invalidations = self.clears = 0
        self._entries: OrderedDict[str, tuple[Any, float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._seq = 0  # bumped by every invalidation and clear
        self._cleared_at = 0
        # tenant -> (seq of its last invalidation, newest version announced); bounded.
        self._marks: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tenant_id: str) -> Any | None:
        """The cached value, or None (absent, expired, or the cache is off)."""
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is None or not self.enabled:
                self.misses += 1
                return None
            if entry[1] <= self.clock():
                del self._entries[tenant_id]
                self.misses += 1
                return None
            self._entries.move_to_end(tenant_id)
            self.hits += 1
            return entry[0]

    def token(self) -> int:
        """Take before fetching a value that :meth:`put` will store."""
        return self._seq

    def newest_version(self, tenant_id: str) -> int:
        """The newest version a write announced for the tenant (0 if none remembered)."""
        mark = self._marks.get(tenant_id)
        return mark[1] if mark else 0

    def unchanged_since(self, tenant_id: str, token: int) -> bool:
        """True when no invalidation of the tenant (nor a clear) happened after ``token``."""
        mark = self._marks.get(tenant_id)
        return token >= self._cleared_at and (mark is None or mark[0] <= token)

    def put(self, tenant_id: str, value: Any, version: int, token: int) -> bool:
        """Keep a value fetched after ``token`` was taken; False when it may be stale."""
        with self._lock:
            if not (self.enabled and self.unchanged_since(tenant_id, token)):
                return False
            if version < self.newest_version(tenant_id):
                return False
            self._entries[tenant_id] = (value, self.clock() + self.ttl, version)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.evictions += 1
            return True

    def invalidate(self, tenant_id: str, version: int = 0) -> None:
        """Drop one tenant; ``version`` is the newest one written (0: unknown / deleted).

        An entry already at ``version`` or newer stays: the announcement arrived after
        this process had read the write it announces.
        """
        with self._lock:
            self._seq += 1
            self.invalidations += 1
            entry = self._entries.get(tenant_id)
            if entry is not None and not (version and entry[2] >= version):
                del self._entries[tenant_id]
            newest = max(version, self.newest_version(tenant_id))
            self._marks[tenant_id] = (self._seq, newest)
            if len(self._marks) > max(1024, self.max_entries):
                # Forgetting the marks is safe only if every fetch in flight is refused.
                self._marks.clear()
                self._cleared_at = self._seq

    def clear(self) -> None:
        """Drop everything, and refuse every value fetched before now."""
        with self._lock:
            self._seq += 1
            self.clears += 1
            self._cleared_at = self._seq
            self._entries.clear()
            self._marks.clear()

    def enable(self) -> None:
        """Start serving, from empty (whatever was missed while off is gone)."""
        self.clear()
        self.enabled = True

    def disable(self) -> None:
        """Stop serving and forget everything (invalidations can no longer be received)."""
        self.enabled = False
        self.clear()

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "size": len(self._entries),
                "max_entries": self.max_entries, "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions, "invalidations": self.invalidations,
                "clears": self.clears}

    @staticmethod
    def absent_stats() -> dict[str, Any]:
        """:meth:`stats` for a repository with no near cache: the same keys, all zero, so
        code reading ``stats["near_cache"]["hits"]`` works whatever the configuration."""
        return {"enabled": False, "size": 0, "max_entries": 0, "hits": 0, "misses": 0,
                "evictions": 0, "invalidations": 0, "clears": 0}


class InvalidationListener:
    """A background thread applying every process's write announcements to a near cache.

    The near cache is on only while the subscription is confirmed: on any error (Redis
    gone, no answer to a heartbeat ping) it is switched off and emptied, and the thread
    reconnects with a short backoff; the confirmation of the new subscription empties it
    once more and switches it back on. redis-py may reconnect a pub/sub by itself; it then
    re-subscribes, and that confirmation clears the near cache just the same.

    Args:
        client: the Redis client (real or fakeredis) the writers publish on.
        channel: :attr:`ConfigCache.channel`.
        near: the near cache to keep fresh.
        heartbeat: seconds of silence before a ping; no answer within as long again
            means the connection is dead even if the socket has not said so.
    """

    def __init__(self, client: redis.Redis, channel: str, near: NearCache, *,
                 heartbeat: float = 5.0, poll: float = 0.5,
                 on_subscribed: Callable[[], None] | None = None):
        self.client, self.channel, self.near = client, channel, near
        self.heartbeat, self.poll = heartbeat, poll
        # Called (in the listener thread) each time the subscription is confirmed: the
        # moment to resend the invalidations this process could not send while Redis was
        # away, so other processes do not keep an old copy until the TTL.
        self.on_subscribed = on_subscribed
        self.status = "connecting"
        self.reconnects = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> InvalidationListener:
        self._thread = threading.Thread(target=self._run, name="m11-invalidations",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.near.disable()
        self.ready.clear()
        self.status = "stopped"

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                self._lost(f"{type(exc).__name__}: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.05
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def _listen(self, pubsub: Any) -> None:
        last_seen = time.monotonic()
        pinged_at: float | None = None
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=self.poll)
            now = time.monotonic()
            if message is None:
                if pinged_at is not None and now - pinged_at > self.heartbeat:
                    raise redis.ConnectionError("no answer to the heartbeat ping")
                if pinged_at is None and now - last_seen > self.heartbeat:
                    pubsub.ping()
                    pinged_at = now
                continue
            last_seen, pinged_at = now, None
            kind = message["type"]
            if kind == "subscribe":
                self._subscribed()
            elif kind == "message":
                self._apply(message["data"])

    def _apply(self, data: bytes | str) -> None:
        """Drop the announced tenant. Anyone who can publish on the channel can send any
        bytes; a malformed message still invalidates (version 0 = whatever is cached) and
        never stops the listener thread."""
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        tenant_id, version, origin = [*text.split(" "), "", ""][:3]
        if origin != self.near.id:  # the writer invalidated its own copy before announcing
            # isdecimal() alone admits non-ASCII digits ("٣"); a huge number is no version
            known = version.isascii() and version.isdecimal() and len(version) <= 18
            self.near.invalidate(tenant_id, int(version) if known else 0)

    def _subscribed(self) -> None:
        if self.ready.is_set():
            self.reconnects += 1  # redis-py reconnected on its own: we may have missed some
        self.near.enable()
        self.status = "ok"
        self.ready.set()
        if self.on_subscribed is not None:
            self.on_subscribed()

    def _lost(self, error: str) -> None:
        self.near.disable()
        self.ready.clear()
        if self.status == "ok":
            self.reconnects += 1
        self.status = f"down: {error}"
