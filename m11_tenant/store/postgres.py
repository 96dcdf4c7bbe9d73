# ruff: noqa: F405 -- names from the records module's star import
"""The server store: PostgreSQL through psycopg 3, configs as JSONB.

It implements the primitives of :class:`~m11_tenant.store.base.TransactionalStore`, so the
write algorithm (version check, numbering, history trim, audit line) is the one SQLite
runs. Two writers of one tenant are serialised by a transaction-scoped advisory lock on
the tenant id, taken before the current row is read ``FOR UPDATE``: the row lock alone
cannot protect a tenant's *first* write, when there is no row to lock yet.

One connection per store, guarded by a lock (psycopg connections are thread-safe but run
one statement at a time, and a transaction must not interleave with another thread's
statements). Reads are rare once the near cache and Redis answer, so a pool would buy
little. A lost connection is reopened on the next call; after a failed connect the store
answers "unavailable" at once for ``retry_after`` seconds, so an outage costs one connect
timeout per pause instead of one per request (reads then fall back to the last known good
copy without waiting).

Durability: config, history, audit, key and lock transactions commit as the server is
configured (``synchronous_commit = on`` by default: the commit waits for the WAL flush).
Only the usage ledger's transactions say ``SET LOCAL synchronous_commit = off``: a crash of
the database server can lose their last moments (PostgreSQL bounds it at 3 ×
``wal_writer_delay``), never a config. They are sent in pipeline mode, one round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.store.base import TransactionalStore
from m11_tenant.store.migrations import POSTGRES_MIGRATIONS
from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)

# Any key serialises concurrent migrations of one database; this one spells "m11migr".
MIGRATION_LOCK_KEY = 0x6D31316D696772
CONNECT_OPTIONS = {
    "connect_timeout": 3,      # seconds to give up on an unreachable server
    "tcp_user_timeout": 5000,  # ms of unacknowledged data before a dead peer is dropped
    "keepalives": 1,
    "application_name": "m11_tenant",
}
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)
_UPSERT_USAGE = (
    "INSERT INTO usage_daily AS u (tenant_id, day, queries, prompt_tokens, completion_tokens, "
    "cost_usd) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, day) DO UPDATE SET "
    "queries = u.queries + excluded.queries, "
    "prompt_tokens = u.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = u.completion_tokens + excluded.completion_tokens, "
    "cost_usd = u.cost_usd + excluded.cost_usd")
# The gate, one statement (see SQLiteStore): INSERT … ON CONFLICT DO UPDATE locks the day's
# row, so concurrent reservations queue on it and each re-checks the count it left.
_RESERVE_QUERY = (
    "INSERT INTO usage_daily AS u (tenant_id, day, queries, prompt_tokens, completion_tokens, "
    "cost_usd) SELECT %s, %s, 1, 0, 0, 0.0 WHERE %s > 0 AND (SELECT coalesce(sum(cost_usd), 0) "
    "FROM usage_daily WHERE tenant_id = %s AND day >= %s AND day <= %s) < %s "
    "ON CONFLICT (tenant_id, day) DO UPDATE SET queries = u.queries + 1 "
    "WHERE u.queries < %s RETURNING u.queries")
_CURRENT = "SELECT tenant_id, config, version, updated_at, updated_by FROM tenant_configs"
_KEY = ("SELECT key_id, tenant_id, created_at, created_by, revoked_at, revoked_by, "
        "last_used_at FROM api_keys")
_SESSION = ("SELECT s.token_hash, s.role, s.actor, s.tenant_id, s.key_id, s.csrf, s.created_at, "
            "s.expires_at, s.ended_at, k.revoked_at FROM console_sessions s "
            "LEFT JOIN api_keys k ON k.key_id = s.key_id")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _where(url: str) -> str:
    """The server part of a URL, for messages (never the password)."""
    return url.split("@", 1)[-1].split("?", 1)[0] if "@" in url else url.split("?", 1)[0]


class PostgresStore(TransactionalStore):
    """Tenant configs, history, audit log and usage in PostgreSQL.

    Args:
        url: ``postgresql://user@host:port/db``; libpq parameters in the query string are
            honoured (``?options=-csearch_path%3Dmy_schema`` puts the tables in a schema).
        history_limit: versions kept per tenant, the current one included.
        clock: returns an aware ``datetime``; stored times come from it.
        retry_after: seconds to answer "unavailable" without reconnecting after a failure.

    Raises:
        StoreUnavailableError: the server cannot be reached or migrated at open.
    """

    def __init__(self, url: str, *, history_limit: int = 10, clock: Clock = _utcnow,
                 retry_after: float = 1.0):
        self.url, self.history_limit, self.clock = url, history_limit, clock
        self.retry_after = retry_after
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._down_until = 0.0
        self._last_error = ""
        self._in_transaction = False
        self._disconnected = False
        self._migrate()

    # ---- connection ----------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, reopened if it was lost (call with the lock held)."""
        if self._disconnected:
            raise StoreUnavailableError(f"PostgreSQL at {_where(self.url)} is disconnected "
                                        "(an outage drill): reconnect() ends it")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(
                f"PostgreSQL at {_where(self.url)} is unreachable ({self._last_error}); "
                f"retrying in at most {self.retry_after:g} s"
            )
        try:
            # The URL's own parameters win over our defaults.
            params = {**CONNECT_OPTIONS, **conninfo_to_dict(self.url)}
            self._conn = psycopg.connect(autocommit=True, **params)
        except psycopg.Error as exc:
            raise self._unavailable(exc, "cannot connect to") from exc
        self._down_until = 0.0
        return self._conn

    def _unavailable(self, exc: BaseException, doing: str) -> StoreUnavailableError:
        """Say what happened; if the connection is gone, forget it and start the pause.

        An error on a live connection (a deadlock, a cancelled statement) fails only the
        call: the next one runs at once on the same connection.
        """
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._conn = None
            self._down_until = time.monotonic() + self.retry_after
        self._last_error = " ".join(str(exc).split()) or type(exc).__name__
        return StoreUnavailableError(
            f"PostgreSQL at {_where(self.url)}: {doing} the database failed "
            f"({self._last_error})"
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            conn = self._connection()
            self._in_transaction = True
            try:
                with conn.transaction():
                    yield
            except _LOST as exc:
                raise self._unavailable(exc, "a write to") from exc
            finally:
                self._in_transaction = False

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and fetch its rows (inside a transaction, or autocommit)."""
        with self._lock:
            conn = self._connection()
            try:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
            except _LOST as exc:
                if self._in_transaction:  # the transaction reports it once, after rollback
                    raise
                raise self._unavailable(exc, "a read from") from exc

    def _migrate(self) -> None:
        with self._transaction():
            self._rows("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            self._rows("CREATE TABLE IF NOT EXISTS schema_migrations ("
                       "version integer PRIMARY KEY, name text NOT NULL, "
                       "applied_at text NOT NULL)")
            done = {row[0] for row in self._rows("SELECT version FROM schema_migrations")}
            for version, name, sql in POSTGRES_MIGRATIONS:
                if version not in done:
                    self._rows(sql)
                    self._rows("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                               (version, name, self._now()))

    @property
    def schema_version(self) -> int:
        return int(self._rows("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0])

    def ping(self) -> None:
        """Ask the server now, even during the pause after a failure."""
        with self._lock:
            self._down_until = 0.0
            self._rows("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def disconnect(self) -> None:
        """Close the connection and refuse every call until :meth:`reconnect` (a drill)."""
        with self._lock:
            self.close()
            self._disconnected = True

    def reconnect(self) -> None:
        """End :meth:`disconnect`: the next call connects again."""
        with self._lock:
            self._disconnected, self._down_until = False, 0.0

    # ---- primitives of the shared write algorithm ---------------------------------------
    def _read_current(self, tenant_id: str) -> ConfigRecord | None:
        # The advisory lock serialises every writer of this tenant until commit, even when
        # no row exists yet; FOR UPDATE then reads the row no one else can change.
        self._rows("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (tenant_id,))
        rows = self._rows(f"{_CURRENT} WHERE tenant_id = %s FOR UPDATE", (tenant_id,))
        return ConfigRecord(*rows[0]) if rows else None

    def _max_history_version(self, tenant_id: str) -> int:
        rows = self._rows("SELECT coalesce(max(version), 0) FROM config_history "
                          "WHERE tenant_id = %s", (tenant_id,))
        return int(rows[0][0])

    def _put_current(self, record: ConfigRecord) -> None:
        self._rows(
            "INSERT INTO tenant_configs (tenant_id, config, version, updated_at, updated_by) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id) DO UPDATE SET "
            "config = excluded.config, version = excluded.version, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (record.tenant_id, Jsonb(record.config), record.version, record.updated_at,
             record.updated_by),
        )

    def _delete_current(self, tenant_id: str) -> None:
        self._rows("DELETE FROM tenant_configs WHERE tenant_id = %s", (tenant_id,))

    def _append_history(self, entry: HistoryEntry) -> None:
        self._rows(
            "INSERT INTO config_history (tenant_id, version, config, created_at, created_by, "
            "action) VALUES (%s, %s, %s, %s, %s, %s)",
            (entry.tenant_id, entry.version, Jsonb(entry.config), entry.created_at,
             entry.created_by, entry.action),
        )

    def _trim_history(self, tenant_id: str, keep_from_version: int) -> None:
        self._rows("DELETE FROM config_history WHERE tenant_id = %s AND version < %s",
                   (tenant_id, keep_from_version))

    def _append_audit(self, at: str, tenant_id: str, change: Change, version: int | None,
                      diff: dict[str, Any]) -> None:
        self._rows(
            "INSERT INTO audit_log (at, actor, role, tenant_id, action, version, diff, reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (at, change.actor, change.role, tenant_id, change.action, version, Jsonb(diff),
             change.reason),
        )

    def _count_audit(self, at: str, tenant_id: str, change: Change, aggregate_key: str) -> None:
        self._rows(
            "INSERT INTO audit_log (at, actor, role, tenant_id, action, version, diff, reason, "
            "count, aggregate_key) VALUES (%s, %s, %s, %s, %s, NULL, '{}', %s, 1, %s) "
            "ON CONFLICT (aggregate_key) DO UPDATE SET count = audit_log.count + 1, "
            "at = excluded.at",
            (at, change.actor, change.role, tenant_id, change.action, change.reason,
             aggregate_key))

    # ---- reads ----------------------------------------------------------------------------
    def get(self, tenant_id: str) -> ConfigRecord | None:
        rows = self._rows(f"{_CURRENT} WHERE tenant_id = %s", (tenant_id,))
        return ConfigRecord(*rows[0]) if rows else None

    def get_many(self, tenant_ids: list[str] | None = None) -> list[ConfigRecord]:
        if tenant_ids is None:
            rows = self._rows(f"{_CURRENT} ORDER BY tenant_id")
        else:
            rows = self._rows(f"{_CURRENT} WHERE tenant_id = ANY(%s) ORDER BY tenant_id",
                              (list(tenant_ids),))
        return [ConfigRecord(*row) for row in rows]

    def list_tenants(self, limit: int = 100, offset: int = 0) -> list[str]:
        rows = self._rows("SELECT tenant_id FROM tenant_configs ORDER BY tenant_id "
                          "LIMIT %s OFFSET %s", (limit, offset))
        return [row[0] for row in rows]

    def count_tenants(self) -> int:
        return int(self._rows("SELECT count(*) FROM tenant_configs")[0][0])

    def history(self, tenant_id: str) -> list[HistoryEntry]:
        rows = self._rows("SELECT tenant_id, version, config, created_at, created_by, action "
                          "FROM config_history WHERE tenant_id = %s ORDER BY version DESC",
                          (tenant_id,))
        return [HistoryEntry(*row) for row in rows]

    def audit(self, tenant_id: str | None = None, limit: int = 100,
              offset: int = 0) -> list[AuditEntry]:
        where, params = ("WHERE tenant_id = %s", (tenant_id,)) if tenant_id else ("", ())
        rows = self._rows("SELECT id, at, actor, role, tenant_id, action, version, diff, "
                          f"reason, count FROM audit_log {where} ORDER BY id DESC "
                          "LIMIT %s OFFSET %s",
                          (*params, limit, offset))
        return [AuditEntry(*row) for row in rows]

    # ---- API keys and bulk-change locks ---------------------------------------------------
    def _is_locked(self, tenant_id: str) -> bool:
        # Inside a write or set_locked: the tenant's advisory lock makes the check and the
        # change that follows atomic with respect to every other writer of the tenant.
        self._rows("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (tenant_id,))
        return self.is_locked(tenant_id)

    def is_locked(self, tenant_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM tenant_locks WHERE tenant_id = %s", (tenant_id,)))

    def _put_lock(self, tenant_id: str, at: str, change: Change) -> None:
        self._rows("INSERT INTO tenant_locks (tenant_id, locked_at, locked_by, reason) "
                   "VALUES (%s, %s, %s, %s)", (tenant_id, at, change.actor, change.reason))

    def _drop_lock(self, tenant_id: str) -> None:
        self._rows("DELETE FROM tenant_locks WHERE tenant_id = %s", (tenant_id,))

    def _insert_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        self._rows("INSERT INTO api_keys (key_id, tenant_id, key_hash, created_at, created_by) "
                   "VALUES (%s, %s, %s, %s, %s)",
                   (record.key_id, record.tenant_id, key_hash, record.created_at,
                    record.created_by))

    def _insert_cost_alert(self, alert: CostAlert) -> bool:
        return bool(self._rows(
            "INSERT INTO cost_alerts (tenant_id, month, threshold_pct, spent_usd, budget_usd, "
            "at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (alert.tenant_id, alert.month, alert.threshold_pct, alert.spent_usd,
             alert.budget_usd, alert.at)))

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        """Recorded cost alerts, newest first; optionally one tenant's and/or one month's."""
        rows = self._rows(
            "SELECT tenant_id, month, threshold_pct, spent_usd, budget_usd, at FROM cost_alerts "
            "WHERE (%s::text IS NULL OR tenant_id = %s) AND (%s::text IS NULL OR month = %s) "
            "ORDER BY month DESC, at DESC, threshold_pct DESC, tenant_id LIMIT %s",
            (tenant_id, tenant_id, month, month, limit))
        return [CostAlert(*row) for row in rows]

    def _read_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        # FOR UPDATE: a concurrent revoke and rotate of one key are serialised.
        rows = self._rows(f"{_KEY} WHERE tenant_id = %s AND key_id = %s FOR UPDATE",
                          (tenant_id, key_id))
        return ApiKeyRecord(*rows[0]) if rows else None

    def _set_key_end(self, key_id: str, revoked_at: str, revoked_by: str) -> None:
        self._rows("UPDATE api_keys SET revoked_at = %s, revoked_by = %s WHERE key_id = %s",
                   (revoked_at, revoked_by, key_id))

    def _insert_session(self, session: SessionRecord) -> None:
        self._rows("INSERT INTO console_sessions (token_hash, role, actor, tenant_id, key_id, "
                   "csrf, created_at, expires_at, ended_at) "
                   "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   (session.token_hash, session.role, session.actor, session.tenant_id,
                    session.key_id, session.csrf, session.created_at, session.expires_at,
                    session.ended_at))

    def _purge_sessions(self, now: str) -> None:
        self._rows("DELETE FROM console_sessions WHERE expires_at <= %s OR ended_at <= %s",
                   (now, now))

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self._rows(f"{_KEY} WHERE key_hash = %s", (key_hash,))
        return ApiKeyRecord(*rows[0]) if rows else None

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        rows = self._rows(f"{_KEY} WHERE tenant_id = %s ORDER BY created_at, key_id",
                          (tenant_id,))
        return [ApiKeyRecord(*row) for row in rows]

    def touch_api_key(self, key_id: str, at: str) -> None:
        self._rows("UPDATE api_keys SET last_used_at = %s WHERE key_id = %s", (at, key_id))

    def find_session(self, token_hash: str) -> SessionRecord | None:
        rows = self._rows(f"{_SESSION} WHERE s.token_hash = %s", (token_hash,))
        return SessionRecord(*rows[0]) if rows else None

    def end_session(self, token_hash: str) -> bool:
        rows = self._rows("UPDATE console_sessions SET ended_at = %s "
                          "WHERE token_hash = %s AND ended_at IS NULL RETURNING token_hash",
                          (self._now(), token_hash))
        return bool(rows)

    # ---- the opt-in query log ---------------------------------------------------------------
    def _insert_logged_query(self, entry: LoggedQuery) -> None:
        # One appender per tenant at a time (seed 1: not the config writers' lock), so two
        # concurrent appends cannot both trim without seeing each other's row.
        self._rows("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (entry.tenant_id,))
        self._rows(
            "INSERT INTO query_log (tenant_id, at, question, source_ids, model, prompt_tokens, "
            "completion_tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (entry.tenant_id, entry.at, entry.question, Jsonb(list(entry.source_ids)),
             entry.model, entry.prompt_tokens, entry.completion_tokens, entry.cost_usd))

    def _trim_query_log(self, tenant_id: str, keep: int, not_before: str | None) -> int:
        with self._lock:
            cur = self._connection().execute(
                "DELETE FROM query_log WHERE tenant_id = %s AND (at < %s OR id NOT IN (SELECT "
                "id FROM query_log WHERE tenant_id = %s ORDER BY id DESC LIMIT %s))",
                (tenant_id, not_before or "", tenant_id, keep))
            return cur.rowcount

    def query_log(self, tenant_id: str, *, limit: int,
                  max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> list[LoggedQuery]:
        rows = self._rows("SELECT tenant_id, question, source_ids, model, prompt_tokens, "
                          "completion_tokens, cost_usd, at, id FROM query_log "
                          "WHERE tenant_id = %s AND at >= %s ORDER BY id DESC LIMIT %s",
                          (tenant_id, self._days_ago(max_age_days), limit))
        return [LoggedQuery(r[0], r[1], tuple(r[2]), *r[3:]) for r in rows]

    # ---- usage ledger -------------------------------------------------------------------
    @contextmanager
    def _usage_transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """A ledger transaction that commits without waiting for the disk, sent in one go."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
                    cur.execute("SET LOCAL synchronous_commit = off")
                    yield cur
            except _LOST as exc:
                raise self._unavailable(exc, "a usage write to") from exc

    def record_usage_many(self, deltas: list[UsageDelta]) -> None:
        if not deltas:
            return
        with self._usage_transaction() as cur:
            cur.executemany(_UPSERT_USAGE, [
                (d.tenant_id, d.day, d.queries, d.prompt_tokens, d.completion_tokens,
                 d.cost_usd) for d in deltas])

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        first = day.replace(day=1)
        with self._usage_transaction() as cur:
            cur.execute(_RESERVE_QUERY, (tenant_id, day, daily_queries, tenant_id, first, day,
                                         monthly_budget_usd, daily_queries))
            if cur.fetchone() is None:
                return None
            cur.execute("SELECT coalesce(sum(cost_usd), 0) FROM usage_daily "
                        "WHERE tenant_id = %s AND day >= %s AND day <= %s",
                        (tenant_id, first, day))
            return float(cur.fetchone()[0])

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        today = self._rows("SELECT queries, prompt_tokens + completion_tokens, cost_usd "
                           "FROM usage_daily WHERE tenant_id = %s AND day = %s",
                           (tenant_id, day))
        month = self._rows("SELECT coalesce(sum(cost_usd), 0) FROM usage_daily "
                           "WHERE tenant_id = %s AND day >= %s AND day <= %s",
                           (tenant_id, day.replace(day=1), day))
        queries, tokens, cost = today[0] if today else (0, 0, 0.0)
        return UsageTotals(queries_today=int(queries), cost_today_usd=float(cost),
                           cost_month_usd=float(month[0][0]), tokens_today=int(tokens))
