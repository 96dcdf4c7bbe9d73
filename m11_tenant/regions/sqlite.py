"""Regions on SQLite: one file per region, with the replication bookkeeping beside the configs."""

from __future__ import annotations

import sqlite3
from typing import Any

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.regions.journal import ReplicaJournal
from m11_tenant.store.sqlite import SQLiteStore


class ReplicaSQLiteStore(ReplicaJournal, SQLiteStore):
    """One region's SQLite file: tenant configs and their replication bookkeeping."""

    def _replica_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cursor = self.db.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"SQLite replica bookkeeping failed: {exc}") from exc
