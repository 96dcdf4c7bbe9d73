"""Open a region's store for a database URL (SQLite file, or a PostgreSQL schema)."""

from __future__ import annotations

from collections.abc import Callable

from m11_tenant.regions.clock import HybridLogicalClock
from m11_tenant.regions.journal import ReplicaJournal
from m11_tenant.regions.sqlite import ReplicaSQLiteStore


def open_replica_store(url: str, *, region: str, hlc: HybridLogicalClock,
                       clock_ms: Callable[[], int], history_limit: int = 10) -> ReplicaJournal:
    """A region's store for a URL: ``sqlite:///path.db`` or ``postgresql://…`` (one schema)."""
    if url.startswith(("postgresql://", "postgres://")):
        # Imported on demand: psycopg is an optional dependency.
        from m11_tenant.regions.postgres import ReplicaPostgresStore

        return ReplicaPostgresStore(url, region=region, hlc=hlc, clock_ms=clock_ms,
                                    history_limit=history_limit)
    return ReplicaSQLiteStore(url, region=region, hlc=hlc, clock_ms=clock_ms,
                              history_limit=history_limit)
