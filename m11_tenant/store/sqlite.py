# ruff: noqa: F405 -- names from the records module's star import
"""The embedded default store: one SQLite file, through sqlite-utils.

WAL mode lets readers run while a writer writes; ``busy_timeout`` makes a second process
wait for the write lock instead of failing at once; every write opens with
``BEGIN IMMEDIATE`` so a merge's read-modify-write holds the lock from its first read, and
two processes updating the same tenant cannot lose an update.

Durability is chosen per transaction: config writes, history, audit lines and keys commit
with ``synchronous = FULL`` (fsync of the WAL before the commit returns); the usage
ledger commits with ``synchronous = NORMAL`` (no fsync; WAL mode keeps the file
consistent, and a power cut can only roll back the last moments of usage counters).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.store.base import TransactionalStore
from m11_tenant.store.migrations import SQLITE_MIGRATIONS
from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)

BUSY_TIMEOUT_MS = 10_000
_KEY = ("SELECT key_id, tenant_id, created_at, created_by, revoked_at, revoked_by, "
        "last_used_at FROM api_keys")
#: ``PRAGMA synchronous`` per transaction kind (see the module docstring).
DURABLE, LAZY = "FULL", "NORMAL"
_UPSERT_USAGE = (
    "INSERT INTO usage_daily (tenant_id, day, queries, prompt_tokens, completion_tokens, "
    "cost_usd) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, day) DO UPDATE SET "
    "queries = queries + excluded.queries, "
    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens, "
    "cost_usd = cost_usd + excluded.cost_usd")
# One statement checks both limits and counts the query: the SELECT yields a row only while
# the month's spend is under budget, and the upsert's WHERE only while the day's count is
# under quota. RETURNING says whether a row was written, i.e. whether the slot is ours.
_RESERVE_QUERY = (
    "INSERT INTO usage_daily (tenant_id, day, queries, prompt_tokens, completion_tokens, "
    "cost_usd) SELECT ?, ?, 1, 0, 0, 0.0 WHERE ? > 0 AND (SELECT coalesce(sum(cost_usd), 0) "
    "FROM usage_daily WHERE tenant_id = ? AND day >= ? AND day <= ?) < ? "
    "ON CONFLICT (tenant_id, day) DO UPDATE SET queries = queries + 1 WHERE queries < ? "
    "RETURNING queries")
_MONTH_SPEND = ("SELECT coalesce(sum(cost_usd), 0) FROM usage_daily "
                "WHERE tenant_id = ? AND day >= ? AND day <= ?")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite URL: {url!r} (expected sqlite:///path.db)")
    return url.removeprefix("sqlite:///") or ":memory:"


class SQLiteStore(TransactionalStore):
    """Tenant configs, history, audit log and usage in one SQLite file."""

    def __init__(self, url: str, *, history_limit: int = 10, clock: Clock = _utcnow):
        self.url, self.history_limit, self.clock = url, history_limit, clock
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by this process's threads, guarded by a lock: sqlite3
        # connections are not safe to use from two threads at once.
        self._lock = threading.RLock()
        try:
            self._connect()
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite database {path!r}: {exc}") from exc

    # ---- lifecycle --------------------------------------------------------------------
    def _connect(self) -> None:
        path = sqlite_path(self.url)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        self.db = sqlite_utils.Database(conn)
        self._synchronous = ""
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if path != ":memory:":
            self.db.enable_wal()

    def _migrate(self) -> None:
        with self._lock, self._transaction():
            self.db["schema_migrations"].create(
                {"version": int, "name": str, "applied_at": str}, pk="version",
                if_not_exists=True,
            )
            done = {row["version"]
                    for row in self.db.query("SELECT version FROM schema_migrations")}
            for version, name, migrate in SQLITE_MIGRATIONS:
                if version not in done:
                    migrate(self.db)
                    self.db["schema_migrations"].insert(
                        {"version": version, "name": name, "applied_at": self._now()}
                    )

    @property
    def schema_version(self) -> int:
        row = next(self.db.query("SELECT max(version) AS v FROM schema_migrations"))
        return int(row["v"] or 0)

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def disconnect(self) -> None:
        """Close the connection, so every call fails as with a lost one (an outage drill)."""
        self.close()

    def reconnect(self) -> None:
        """Open the file again after :meth:`disconnect` (nothing stored is lost); a no-op
        while connected."""
        with self._lock, contextlib.suppress(StoreUnavailableError):
            self.ping()
            return
        with self._lock:
            try:
                self._connect()
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot reopen SQLite database: {exc}") from exc

    # ---- plumbing -----------------------------------------------------------------------
    @contextmanager
    def _transaction(self, synchronous: str = DURABLE) -> Iterator[None]:
        with self._lock:
            try:
                # The connection itself, not sqlite-utils' wrapper: this is every write's path.
                if synchronous != self._synchronous:  # only settable between transactions
                    self.db.conn.execute(f"PRAGMA synchronous = {synchronous}")
                    self._synchronous = synchronous
                self.db.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"SQLite refused a write: {exc}") from exc
            try:
                yield
            except BaseException:
                self.db.conn.rollback()
                raise
            try:
                self.db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self.db.conn.rollback()
                raise StoreUnavailableError(f"SQLite could not commit: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"SQLite read failed: {exc}") from exc

    # ---- primitives of the shared write algorithm ---------------------------------------
    def _read_current(self, tenant_id: str) -> ConfigRecord | None:
        rows = self._read("SELECT * FROM tenant_configs WHERE tenant_id = ?", (tenant_id,))
        return _record(rows[0]) if rows else None

    def _max_history_version(self, tenant_id: str) -> int:
        rows = self._read("SELECT max(version) AS v FROM config_history WHERE tenant_id = ?",
                          (tenant_id,))
        return int(rows[0]["v"] or 0)

    def _put_current(self, record: ConfigRecord) -> None:
        self.db["tenant_configs"].upsert(
            {"tenant_id": record.tenant_id, "config": json.dumps(record.config),
             "version": record.version, "updated_at": record.updated_at,
             "updated_by": record.updated_by},
            pk="tenant_id",
        )

    def _delete_current(self, tenant_id: str) -> None:
        self.db["tenant_configs"].delete(tenant_id)

    def _append_history(self, entry: HistoryEntry) -> None:
        self.db["config_history"].insert(
            {"tenant_id": entry.tenant_id, "version": entry.version,
             "config": json.dumps(entry.config), "created_at": entry.created_at,
             "created_by": entry.created_by, "action": entry.action}
        )

    def _trim_history(self, tenant_id: str, keep_from_version: int) -> None:
        self.db.execute("DELETE FROM config_history WHERE tenant_id = ? AND version < ?",
                        (tenant_id, keep_from_version))

    def _append_audit(self, at: str, tenant_id: str, change: Change, version: int | None,
                      diff: dict[str, Any]) -> None:
        self.db["audit_log"].insert(
            {"at": at, "actor": change.actor, "role": change.role, "tenant_id": tenant_id,
             "action": change.action, "version": version, "diff": json.dumps(diff),
             "reason": change.reason}
        )

    def _count_audit(self, at: str, tenant_id: str, change: Change, aggregate_key: str) -> None:
        self.db.execute(
            "INSERT INTO audit_log (at, actor, role, tenant_id, action, version, diff, reason, "
            "count, aggregate_key) VALUES (?, ?, ?, ?, ?, NULL, '{}', ?, 1, ?) "
            "ON CONFLICT (aggregate_key) DO UPDATE SET count = count + 1, at = excluded.at",
            (at, change.actor, change.role, tenant_id, change.action, change.reason,
             aggregate_key))

    def _is_locked(self, tenant_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM tenant_locks WHERE tenant_id = ?", (tenant_id,)))

    def _put_lock(self, tenant_id: str, at: str, change: Change) -> None:
        self.db["tenant_locks"].insert(
            {"tenant_id": tenant_id, "locked_at": at, "locked_by": change.actor,
             "reason": change.reason}
        )

    def _drop_lock(self, tenant_id: str) -> None:
        self.db["tenant_locks"].delete(tenant_id)

    def _insert_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        self.db["api_keys"].insert(
            {"key_id": record.key_id, "tenant_id": record.tenant_id, "key_hash": key_hash,
             "created_at": record.created_at, "created_by": record.created_by}
        )

    def _read_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        rows = self._read(f"{_KEY} WHERE tenant_id = ? AND key_id = ?", (tenant_id, key_id))
        return ApiKeyRecord(**rows[0]) if rows else None

    def _set_key_end(self, key_id: str, revoked_at: str, revoked_by: str) -> None:
        self.db.execute("UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE key_id = ?",
                        (revoked_at, revoked_by, key_id))

    def _insert_session(self, session: SessionRecord) -> None:
        row = dict(session.__dict__)
        row.pop("key_revoked_at")
        self.db["console_sessions"].insert(row)

    def _purge_sessions(self, now: str) -> None:
        self.db.execute("DELETE FROM console_sessions WHERE expires_at <= ? OR ended_at <= ?",
                        (now, now))

    def _insert_logged_query(self, entry: LoggedQuery) -> None:
        self.db.execute(
            "INSERT INTO query_log (tenant_id, at, question, source_ids, model, prompt_tokens, "
            "completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.tenant_id, entry.at, entry.question, json.dumps(list(entry.source_ids)),
             entry.model, entry.prompt_tokens, entry.completion_tokens, entry.cost_usd))

    def _trim_query_log(self, tenant_id: str, keep: int, not_before: str | None) -> int:
        # BEGIN IMMEDIATE already serialises every writer, so the count cannot race.
        cur = self.db.execute(
            "DELETE FROM query_log WHERE tenant_id = ? AND (at < ? OR id NOT IN (SELECT id "
            "FROM query_log WHERE tenant_id = ? ORDER BY id DESC LIMIT ?))",
            (tenant_id, not_before or "", tenant_id, keep))
        return cur.rowcount

    def _insert_cost_alert(self, alert: CostAlert) -> bool:
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO cost_alerts (tenant_id, month, threshold_pct, spent_usd, "
            "budget_usd, at) VALUES (?, ?, ?, ?, ?, ?)",
            (alert.tenant_id, alert.month, alert.threshold_pct, alert.spent_usd,
             alert.budget_usd, alert.at))
        return cursor.rowcount == 1

    # ---- reads ----------------------------------------------------------------------------
    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        """Recorded cost alerts, newest first; optionally one tenant's and/or one month's."""
        rows = self._read(
            "SELECT * FROM cost_alerts WHERE (? IS NULL OR tenant_id = ?) "
            "AND (? IS NULL OR month = ?) ORDER BY month DESC, at DESC, threshold_pct DESC, "
            "tenant_id LIMIT ?", (tenant_id, tenant_id, month, month, limit))
        return [CostAlert(**row) for row in rows]

    def is_locked(self, tenant_id: str) -> bool:
        return self._is_locked(tenant_id)

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self._read(f"{_KEY} WHERE key_hash = ?", (key_hash,))
        return ApiKeyRecord(**rows[0]) if rows else None

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        rows = self._read(f"{_KEY} WHERE tenant_id = ? ORDER BY created_at, key_id",
                          (tenant_id,))
        return [ApiKeyRecord(**row) for row in rows]

    def touch_api_key(self, key_id: str, at: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?",
                            (at, key_id))

    def find_session(self, token_hash: str) -> SessionRecord | None:
        rows = self._read("SELECT s.*, k.revoked_at AS key_revoked_at FROM console_sessions s "
                          "LEFT JOIN api_keys k ON k.key_id = s.key_id "
                          "WHERE s.token_hash = ?", (token_hash,))
        return SessionRecord(**rows[0]) if rows else None

    def end_session(self, token_hash: str) -> bool:
        with self._transaction():
            cursor = self.db.execute("UPDATE console_sessions SET ended_at = ? "
                                     "WHERE token_hash = ? AND ended_at IS NULL",
                                     (self._now(), token_hash))
            return cursor.rowcount > 0

    def get(self, tenant_id: str) -> ConfigRecord | None:
        return self._read_current(tenant_id)

    def get_many(self, tenant_ids: list[str] | None = None) -> list[ConfigRecord]:
        if tenant_ids is None:
            rows = self._read("SELECT * FROM tenant_configs ORDER BY tenant_id")
        else:
            marks = ",".join("?" * len(tenant_ids))
            rows = self._read(f"SELECT * FROM tenant_configs WHERE tenant_id IN ({marks}) "
                              "ORDER BY tenant_id", tuple(tenant_ids))
        return [_record(row) for row in rows]

    def list_tenants(self, limit: int = 100, offset: int = 0) -> list[str]:
        rows = self._read("SELECT tenant_id FROM tenant_configs ORDER BY tenant_id "
                          "LIMIT ? OFFSET ?", (limit, offset))
        return [row["tenant_id"] for row in rows]

    def count_tenants(self) -> int:
        return int(self._read("SELECT count(*) AS n FROM tenant_configs")[0]["n"])

    def history(self, tenant_id: str) -> list[HistoryEntry]:
        rows = self._read("SELECT * FROM config_history WHERE tenant_id = ? "
                          "ORDER BY version DESC", (tenant_id,))
        return [HistoryEntry(r["tenant_id"], r["version"], json.loads(r["config"]),
                             r["created_at"], r["created_by"], r["action"]) for r in rows]

    def audit(self, tenant_id: str | None = None, limit: int = 100,
              offset: int = 0) -> list[AuditEntry]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = self._read(f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                          (*params, limit, offset))
        return [AuditEntry(r["id"], r["at"], r["actor"], r["role"], r["tenant_id"],
                           r["action"], r["version"], json.loads(r["diff"]), r["reason"],
                           r["count"]) for r in rows]

    def query_log(self, tenant_id: str, *, limit: int,
                  max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> list[LoggedQuery]:
        rows = self._read("SELECT * FROM query_log WHERE tenant_id = ? AND at >= ? "
                          "ORDER BY id DESC LIMIT ?",
                          (tenant_id, self._days_ago(max_age_days), limit))
        return [LoggedQuery(r["tenant_id"], r["question"], tuple(json.loads(r["source_ids"])),
                            r["model"], r["prompt_tokens"], r["completion_tokens"],
                            r["cost_usd"], r["at"], r["id"]) for r in rows]

    # ---- usage ledger -------------------------------------------------------------------
    def record_usage_many(self, deltas: list[UsageDelta]) -> None:
        if not deltas:
            return
        with self._transaction(LAZY):
            self.db.conn.executemany(_UPSERT_USAGE, [
                (d.tenant_id, d.day.isoformat(), d.queries, d.prompt_tokens,
                 d.completion_tokens, d.cost_usd) for d in deltas])

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        iso, first = day.isoformat(), day.replace(day=1).isoformat()
        with self._transaction(LAZY):
            conn = self.db.conn
            if not conn.execute(_RESERVE_QUERY, (
                    tenant_id, iso, daily_queries, tenant_id, first, iso, monthly_budget_usd,
                    daily_queries)).fetchall():
                return None
            return float(conn.execute(_MONTH_SPEND, (tenant_id, first, iso)).fetchone()[0])

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        today = self._read("SELECT * FROM usage_daily WHERE tenant_id = ? AND day = ?",
                           (tenant_id, day.isoformat()))
        month = self._read("SELECT coalesce(sum(cost_usd), 0) AS c FROM usage_daily "
                           "WHERE tenant_id = ? AND day >= ? AND day <= ?",
                           (tenant_id, day.replace(day=1).isoformat(), day.isoformat()))
        row = today[0] if today else {}
        return UsageTotals(
            queries_today=int(row.get("queries", 0)),
            cost_today_usd=float(row.get("cost_usd", 0.0)),
            cost_month_usd=float(month[0]["c"]),
            tokens_today=int(row.get("prompt_tokens", 0)) + int(row.get("completion_tokens", 0)),
        )


def _record(row: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord(row["tenant_id"], json.loads(row["config"]), row["version"],
                        row["updated_at"], row["updated_by"])
