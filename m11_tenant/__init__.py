"""Tenant-specific configuration of RAG pipelines: validated, stored, cached, versioned.

>>> from m11_tenant import open_repository
>>> repo = open_repository("sqlite:///:memory:")
>>> repo.update_config("tenant-x", {"temperature": 0.2}).version
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from m11_tenant.errors import (
    ConfigNotFoundError,
    ConfigValidationError,
    InvalidTenantIdError,
    StoreUnavailableError,
    TenantConfigError,
    VersionConflictError,
)
from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
from m11_tenant.schema import TenantConfig

__all__ = [
    "ConfigNotFoundError",
    "ConfigValidationError",
    "InvalidTenantIdError",
    "ResolvedConfig",
    "StoreUnavailableError",
    "TenantConfig",
    "TenantConfigError",
    "TenantConfigRepository",
    "VersionConflictError",
    "open_repository",
]

if TYPE_CHECKING:
    import redis

    from m11_tenant.settings import Settings
    from m11_tenant.store import Clock

_UNSET: str = "\0unset"  # a sentinel: None and "" both mean something for redis_url


def open_repository(database_url: str | None = None, redis_url: str | None = _UNSET,
                    *, redis_client: redis.Redis | None = None, settings: Settings | None = None,
                    clock: Clock | None = None) -> TenantConfigRepository:
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
    """
    from m11_tenant.cache import ConfigCache, make_redis_client
    from m11_tenant.settings import load_settings
    from m11_tenant.store import open_store

    cfg = settings or load_settings()
    url = database_url or cfg.database_url
    client = redis_client if redis_client is not None else make_redis_client(
        cfg.redis_url if redis_url is _UNSET else redis_url)
    store = open_store(url, history_limit=cfg.history_limit, clock=clock)
    cache = ConfigCache(client, ttl=cfg.redis_ttl, last_known_good_ttl=cfg.last_known_good_ttl)
    return TenantConfigRepository(store, cache)
