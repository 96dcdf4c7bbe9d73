"""The source of truth: pick a store from a database URL."""

from __future__ import annotations

from m11_tenant.store.base import (
    BULK_ROLE,
    PLATFORM_ROLES,
    QUERY_LOG_MAX_AGE_DAYS,
    ApiKeyRecord,
    AuditEntry,
    Change,
    Clock,
    ConfigRecord,
    ConfigStore,
    CostAlert,
    HistoryEntry,
    LoggedQuery,
    SessionRecord,
    UsageTotals,
)

__all__ = ["BULK_ROLE", "PLATFORM_ROLES", "QUERY_LOG_MAX_AGE_DAYS", "ApiKeyRecord",
           "AuditEntry", "Change", "Clock", "ConfigRecord", "ConfigStore", "CostAlert",
           "HistoryEntry", "LoggedQuery", "SessionRecord", "UsageTotals", "open_store"]


def open_store(url: str, *, history_limit: int = 10, clock: Clock | None = None) -> ConfigStore:
    """Open the store a URL names: ``sqlite:///path.db`` or ``postgresql://…``."""
    kwargs = {"history_limit": history_limit, **({"clock": clock} if clock else {})}
    if url.startswith("sqlite:///"):
        from m11_tenant.store.sqlite import SQLiteStore

        return SQLiteStore(url, **kwargs)
    if url.startswith(("postgresql://", "postgres://")):
        from m11_tenant.store.postgres import PostgresStore

        return PostgresStore(url, **kwargs)
    raise ValueError(
        f"unsupported DATABASE_URL {url.split(':', 1)[0]!r}: use sqlite:///path.db or "
        "postgresql://user@host:5432/db"
    )
