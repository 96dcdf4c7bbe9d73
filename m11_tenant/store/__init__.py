# ruff: noqa: F405 -- names from the records module's star import
"""The source of truth: narrow ports, their records, and a store picked by database URL.

``sqlite:///path.db`` (the embedded default) and ``postgresql://…`` are the real backends;
``memory://`` is the in-memory twin (:class:`~m11_tenant.store.memory.MemoryStore`), for
tests and sandboxes that need no file: it forgets everything on close.
"""

from __future__ import annotations

from m11_tenant.store import records
from m11_tenant.store.ports import (
    AuditLog,
    BatchingLedger,
    ConfigStore,
    KeyStore,
    LockStore,
    QueryLog,
    Store,
    UsageLedger,
)
from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)

__all__ = ["AuditLog", "BatchingLedger", "ConfigStore", "KeyStore", "LockStore", "QueryLog",
           "Store", "UsageLedger", "open_store", *records.__all__]


def open_store(url: str, *, history_limit: int = 10, clock: Clock | None = None) -> Store:
    """Open the store a URL names: ``sqlite:///path.db``, ``postgresql://…`` or ``memory://``.

    The backends are imported on demand: psycopg is an optional dependency.
    """
    kwargs = {"history_limit": history_limit, **({"clock": clock} if clock else {})}
    if url.startswith("sqlite:///"):
        from m11_tenant.store.sqlite import SQLiteStore

        return SQLiteStore(url, **kwargs)
    if url.startswith(("postgresql://", "postgres://")):
        from m11_tenant.store.postgres import PostgresStore

        return PostgresStore(url, **kwargs)
    if url.startswith("memory://"):
        from m11_tenant.store.memory import MemoryStore

        return MemoryStore(url, **kwargs)
    raise ValueError(
        f"unsupported DATABASE_URL {url.split(':', 1)[0]!r}: use sqlite:///path.db or "
        "postgresql://user@host:5432/db"
    )
