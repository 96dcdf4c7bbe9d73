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


def _sqlite_v4_key_lifecycle_and_sessions(db: sqlite_utils.Database) -> None:
    # A key is refused from ``revoked_at`` on (a rotation's grace period sets it ahead);
    # ``last_used_at`` is refreshed at most once a minute per key and process.
    for column in ("revoked_at", "revoked_by", "last_used_at"):
        db["api_keys"].add_column(column, str)
    db["api_keys"].create_index(["tenant_id", "created_at"])
    # Console sign-ins, kept server-side: the cookie holds a random token whose SHA-256 is
    # the key here, so signing out (``ended_at``) or revoking the key ends the session.
    db["console_sessions"].create(
        {"token_hash": str, "role": str, "actor": str, "tenant_id": str, "key_id": str,
         "csrf": str, "created_at": str, "expires_at": str, "ended_at": str},
        pk="token_hash", not_null={"role", "actor", "key_id", "csrf", "created_at",
                                   "expires_at"},
    )
    db["console_sessions"].create_index(["expires_at"])


def _sqlite_v6_audit_counts(db: sqlite_utils.Database) -> None:
    # Refused attempts are one row per caller, target and action per window, with a count;
    # aggregate_key names that group (NULL for every other row: NULLs never collide).
    db["audit_log"].add_column("count", int, not_null_default=1)
    db["audit_log"].add_column("aggregate_key", str)
    db.execute("CREATE UNIQUE INDEX audit_log_aggregate ON audit_log (aggregate_key)")


def _sqlite_v7_query_log(db: sqlite_utils.Database) -> None:
    # The opt-in per-tenant query log (questions redacted before they get here).
    db["query_log"].create(
        {"id": int, "tenant_id": str, "at": str, "question": str, "source_ids": str,
         "model": str, "prompt_tokens": int, "completion_tokens": int, "cost_usd": float},
        pk="id", not_null={"tenant_id", "at", "question", "source_ids", "model"},
    )
    db["query_log"].create_index(["tenant_id", "id"])


def _sqlite_v8_cost_alerts(db: sqlite_utils.Database) -> None:
    # One row per tenant, month and budget threshold crossed: the key makes "once" hold
    # however many processes notice the same crossing.
    db["cost_alerts"].create(
        {"tenant_id": str, "month": str, "threshold_pct": int, "spent_usd": float,
         "budget_usd": float, "at": str},
        pk=("tenant_id", "month", "threshold_pct"),
    )


SQLITE_MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], None]]] = [
    (1, "tenant configs, history, audit log", _sqlite_v1_core),
    (2, "daily usage ledger", _sqlite_v2_usage),
    (3, "API keys (hashed) and tenant locks", _sqlite_v3_keys_and_locks),
    (4, "key revocation and use, server-side console sessions",
     _sqlite_v4_key_lifecycle_and_sessions),
    (6, "aggregated audit rows for refused attempts", _sqlite_v6_audit_counts),
    (7, "opt-in per-tenant query log", _sqlite_v7_query_log),
    (8, "cost alerts per tenant, month and threshold", _sqlite_v8_cost_alerts),
]


# PostgreSQL: the same tables, with JSONB for configs and diffs. Timestamps stay ISO-8601
# text, exactly as the shared write algorithm produces them, so both backends return
# byte-identical records (and the contract suite compares them). Tenant ids sort
# byte-wise (COLLATE "C"), as in SQLite and Python, whatever the database's locale, so
# list_tenants pages identically on both. Each step is SQL run in the migration transaction.
POSTGRES_MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "tenant configs, history, audit log", """
        CREATE TABLE tenant_configs (
            tenant_id  text COLLATE "C" PRIMARY KEY,
            config     jsonb NOT NULL,
            version    integer NOT NULL,
            updated_at text NOT NULL,
            updated_by text NOT NULL
        );
        CREATE TABLE config_history (
            tenant_id  text COLLATE "C" NOT NULL,
            version    integer NOT NULL,
            config     jsonb NOT NULL,
            created_at text NOT NULL,
            created_by text NOT NULL,
            action     text NOT NULL,
            PRIMARY KEY (tenant_id, version)
        );
        CREATE TABLE audit_log (
            id        bigserial PRIMARY KEY,
            at        text NOT NULL,
            actor     text NOT NULL,
            role      text NOT NULL,
            tenant_id text COLLATE "C" NOT NULL,
            action    text NOT NULL,
            version   integer,
            diff      jsonb NOT NULL,
            reason    text
        );
        CREATE INDEX audit_log_tenant_id ON audit_log (tenant_id, id);
    """),
    (2, "daily usage ledger", """
        CREATE TABLE usage_daily (
            tenant_id         text COLLATE "C" NOT NULL,
            day               date NOT NULL,
            queries           integer NOT NULL,
            prompt_tokens     bigint NOT NULL,
            completion_tokens bigint NOT NULL,
            cost_usd          double precision NOT NULL,
            PRIMARY KEY (tenant_id, day)
        );
    """),
    (3, "API keys (hashed) and tenant locks", """
        CREATE TABLE api_keys (
            key_id     text PRIMARY KEY,
            tenant_id  text COLLATE "C" NOT NULL,
            key_hash   text NOT NULL UNIQUE,
            created_at text NOT NULL,
            created_by text NOT NULL
        );
        CREATE TABLE tenant_locks (
            tenant_id text COLLATE "C" PRIMARY KEY,
            locked_at text NOT NULL,
            locked_by text NOT NULL,
            reason    text
        );
    """),
    (4, "key revocation and use, server-side console sessions", """
        ALTER TABLE api_keys ADD COLUMN revoked_at text;
        ALTER TABLE api_keys ADD COLUMN revoked_by text;
        ALTER TABLE api_keys ADD COLUMN last_used_at text;
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
        CREATE TABLE console_sessions (
            token_hash text PRIMARY KEY,
            role       text NOT NULL,
            actor      text NOT NULL,
            tenant_id  text COLLATE "C",
            key_id     text NOT NULL,
            csrf       text NOT NULL,
            created_at text NOT NULL,
            expires_at text NOT NULL,
            ended_at   text
        );
        CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
    """),
    (6, "aggregated audit rows for refused attempts", """
        ALTER TABLE audit_log ADD COLUMN count integer NOT NULL DEFAULT 1,
                              ADD COLUMN aggregate_key text;
        CREATE UNIQUE INDEX audit_log_aggregate ON audit_log (aggregate_key);
    """),
    (7, "opt-in per-tenant query log", """
        CREATE TABLE query_log (
            id                bigserial PRIMARY KEY,
            tenant_id         text COLLATE "C" NOT NULL,
            at                text NOT NULL,
            question          text NOT NULL,
            source_ids        jsonb NOT NULL,
            model             text NOT NULL,
            prompt_tokens     integer NOT NULL,
            completion_tokens integer NOT NULL,
            cost_usd          double precision NOT NULL
        );
        CREATE INDEX query_log_tenant_id ON query_log (tenant_id, id);
    """),
    (8, "cost alerts per tenant, month and threshold", """
        CREATE TABLE cost_alerts (
            tenant_id     text COLLATE "C" NOT NULL,
            month         text NOT NULL,
            threshold_pct integer NOT NULL,
            spent_usd     double precision NOT NULL,
            budget_usd    double precision NOT NULL,
            at            text NOT NULL,
            PRIMARY KEY (tenant_id, month, threshold_pct)
        );
    """),
]
