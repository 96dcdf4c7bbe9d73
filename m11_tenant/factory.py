"""``open_repository()``: the one call that wires a store, a cache and the near cache.

Kept out of ``m11_tenant/__init__.py`` (which only re-exports it) so that modules inside the
package can import it at the top without importing the package root's other names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from m11_tenant.cache import ConfigCache, InvalidationListener, NearCache, make_redis_client
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import Settings, load_settings
from m11_tenant.store import open_store

if TYPE_CHECKING:
    import redis

    from m11_tenant.store import Clock

_UNSET: str = "\0unset"  # a sentinel: None and "" both mean something for redis_url


def open_repository(database_url: str | None = None, redis_url: str | None = _UNSET,
                    *, redis_client: redis.Redis | None = None, settings: Settings | None = None,
                    clock: Clock | None = None,
                    warm_start: bool | None = None) -> TenantConfigRepository:
    """Open the repository on a database and a cache.

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql://…``; default ``DATABASE_URL``
            from the environment or ``.env``, else ``sqlite:///m11_tenant.db``.
        redis_url: ``redis://…`` for a real Redis, ``""`` for no cache, ``None`` for a
            private in-process fakeredis; default ``REDIS_URL`` from the environment.
        redis_client: an existing Redis client (e.g. a fakeredis sharing a server with
            another repository); wins over ``redis_url``.
        settings: a :class:`~m11_tenant.settings.Settings`; default read from the environment.
        clock: a zero-argument callable returning an aware ``datetime`` (tests, notebooks).
        warm_start: load every tenant into the near cache before returning; default
            ``WARM_START`` from the settings.

    With a Redis (real or fake) and ``NEAR_CACHE_SIZE`` > 0, reads are served from a near
    cache of validated configs kept fresh by pub/sub invalidations; ``repo.close()``
    stops its listener thread.
    """
    cfg = settings or load_settings()
    url = database_url or cfg.database_url
    client = redis_client if redis_client is not None else make_redis_client(
        cfg.redis_url if redis_url is _UNSET else redis_url)
    store = open_store(url, history_limit=cfg.history_limit, clock=clock)
    cache = ConfigCache(client, ttl=cfg.redis_ttl, last_known_good_ttl=cfg.last_known_good_ttl)
    if client is None or cfg.near_cache_size == 0:
        return TenantConfigRepository(store, cache)
    near = NearCache(cfg.near_cache_size, cfg.near_cache_ttl)
    listener = InvalidationListener(client, cache.channel, near).start()
    listener.ready.wait(2.0)  # serve from the near cache from the first read on
    repo = TenantConfigRepository(store, cache, near=near, listener=listener)
    if cfg.warm_start if warm_start is None else warm_start:
        repo.warm_start()
    return repo
