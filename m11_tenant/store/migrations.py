"""Schema migrations, applied in order at start; each runs once per database.

A new column or table is a new numbered step appended here, never an edit of an old one,
so a database created by any earlier version upgrades in place.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _sqlite_v1_core(db: sqlite_utils.Database) -> None:
    db["tenant_configs"].create(
        {"tenant_id": str, "config": str, "version": int, "updated_at": str, "updated_by": str},
        pk="tenant_id", not_null={"config", "version", "updated_at", "updated_by"},
    )
    db["config_history"].create(
        {"tenant_id": str, "version": int, "config": str, "created_at": str,
         "created_by": str, "action": str},
        pk=("tenant_id", "version"),
    )
    db["audit_log"].create(
        {"id": int, "at": str, "actor": str, "role": str, "tenant_id": str, "action": str,
         "version": int, "diff": str, "reason": str},
        pk="id",
    )
    db["audit_log"].create_index(["tenant_id", "id"])


def _sqlite_v2_usage(db: sqlite_utils.Database) -> None:
    db["usage_daily"].create(
        {"tenant_id": str, "day": str, "queries": int, "prompt_tokens": int,
         "completion_tokens": int, "cost_usd": float},
        pk=("tenant_id", "day"),
    )


def _sqlite_v3_keys_and_locks(db: sqlite_utils.Database) -> None:
    # Per-tenant API keys: only a SHA-256 of the key is kept (the key is shown once).
    db["api_keys"].create(
        {"key_id": str, "tenant_id": str, "key_hash": str, "created_at": str,
         "created_by": str},
        pk="key_id", not_null={"tenant_id", "key_hash", "created_at", "created_by"},
    )
    db["api_keys"].create_index(["key_hash"], unique=True)
    # A row here means the tenant locked its config against platform bulk changes.
    db["tenant_locks"].create(
        {"tenant_id": str, "locked_at": str, "locked_by": str, "reason": str},
        pk="tenant_id",
    )


SQLITE_MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], None]]] = [
    (1, "tenant configs, history, audit log", _sqlite_v1_core),
    (2, "daily usage ledger", _sqlite_v2_usage),
    (3, "API keys (hashed) and tenant locks", _sqlite_v3_keys_and_locks),
]
