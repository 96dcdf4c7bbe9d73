# ruff: noqa: F405 -- names from the records module's star import
"""The in-memory twin of the SQL stores: every port, no file, no server.

A test double in the way httpx's ``MockTransport`` and fakeredis are: it runs the same
write algorithm (:class:`~m11_tenant.store.base.TransactionalStore`) and passes the same
contract suites as SQLite and PostgreSQL (``tests/test_store*.py``,
``tests/test_rag_ledger.py``), so a test that needs no database can use it and still trust
what it sees. It is never a default: the embedded default is the SQLite file, which
survives the process; this store forgets everything on :meth:`MemoryStore.close`.

Transactions: one re-entrant lock serialises every call (one writer at a time, as SQLite's
``BEGIN IMMEDIATE`` does), and a write works on the live tables after taking a shallow
copy of them; any error puts the copy back, so a write is all or nothing. Stored configs
go through JSON on the way in and out, as with the SQL stores, so a caller can never
change a stored config by mutating what it wrote or read.

:class:`InMemoryLedger` is the usage ledger alone (the pipeline's twin in notebooks);
:class:`MemoryStore` keeps its usage in one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.store.base import TransactionalStore
from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)

_USAGE_FIELDS = ("queries", "prompt_tokens", "completion_tokens", "cost_usd")


class InMemoryLedger:
    """A dict-backed usage ledger (thread-safe; forgets everything on exit).

    ``rows`` maps ``(tenant_id, day)`` to that day's ``queries``, ``prompt_tokens``,
    ``completion_tokens`` and ``cost_usd``; ``alerts`` maps ``(tenant_id, month,
    threshold_pct)`` to the recorded :class:`~m11_tenant.store.records.CostAlert`.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, date], dict[str, float]] = {}
        self.alerts: dict[tuple[str, str, int], CostAlert] = {}
        self._lock = threading.Lock()

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        with self._lock:
            spent = self._month_cost(tenant_id, day)
            queries = self.rows.get((tenant_id, day), {}).get("queries", 0)
            if queries >= daily_queries or spent >= monthly_budget_usd:
                return None
            self._add(UsageDelta(tenant_id, day, queries=1))
            return spent

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        self.record_usage_many([UsageDelta(tenant_id, day, queries, prompt_tokens,
                                           completion_tokens, cost_usd)])

    def record_usage_many(self, deltas: list[UsageDelta]) -> None:
        with self._lock:
            for delta in deltas:
                self._add(delta)

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        with self._lock:
            today = self.rows.get((tenant_id, day), {})
            month = self._month_cost(tenant_id, day)
        return UsageTotals(
            queries_today=int(today.get("queries", 0)),
            cost_today_usd=float(today.get("cost_usd", 0.0)),
            cost_month_usd=month,
            tokens_today=int(today.get("prompt_tokens", 0) + today.get("completion_tokens", 0)),
        )

    def record_cost_alert(self, alert: CostAlert) -> bool:
        with self._lock:
            key = (alert.tenant_id, alert.month, alert.threshold_pct)
            if key in self.alerts:
                return False
            self.alerts[key] = alert
            return True

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        with self._lock:
            found = [a for a in self.alerts.values()
                     if tenant_id in (None, a.tenant_id) and month in (None, a.month)]
        # The SQL stores' order: month, time and threshold newest first, then tenant id.
        found.sort(key=lambda a: a.tenant_id)
        found.sort(key=lambda a: (a.month, a.at, a.threshold_pct), reverse=True)
        return found[:limit]

    def _add(self, delta: UsageDelta) -> None:
        row = self.rows.setdefault((delta.tenant_id, delta.day), {
            "queries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
        for name in _USAGE_FIELDS:
            row[name] += getattr(delta, name)

    def _month_cost(self, tenant_id: str, day: date) -> float:
        return float(sum(r["cost_usd"] for (t, d), r in self.rows.items()
                         if t == tenant_id and (d.year, d.month) == (day.year, day.month)
                         and d <= day))


@dataclass
class _Tables:
    """Everything but usage; values are immutable, so a shallow copy is a snapshot."""

    current: dict[str, ConfigRecord] = field(default_factory=dict)
    history: dict[str, tuple[HistoryEntry, ...]] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    aggregates: dict[str, int] = field(default_factory=dict)  # aggregate key -> audit index
    locks: set[str] = field(default_factory=set)
    keys: dict[str, tuple[ApiKeyRecord, str]] = field(default_factory=dict)  # id -> (key, hash)
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    query_log: dict[str, tuple[LoggedQuery, ...]] = field(default_factory=dict)
    next_query_id: int = 1

    def copy(self) -> _Tables:
        return _Tables(dict(self.current), dict(self.history), list(self.audit),
                       dict(self.aggregates), set(self.locks), dict(self.keys),
                       dict(self.sessions), dict(self.query_log), self.next_query_id)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _thawed(config: dict[str, Any]) -> dict[str, Any]:
    """A private copy of a config, as a database hands back (JSON in, JSON out)."""
    return json.loads(json.dumps(config))  # type: ignore[no-any-return]


class MemoryStore(TransactionalStore):
    """Every port of :class:`~m11_tenant.store.ports.Store`, kept in this process.

    Args:
        url: ``memory://`` plus any name (for messages only: two stores never share data).
        history_limit: versions kept per tenant, the current one included.
        clock: returns an aware ``datetime``; stored times come from it.
    """

    def __init__(self, url: str = "memory://", *, history_limit: int = 10,
                 clock: Clock = _utcnow):
        self.url, self.history_limit, self.clock = url, history_limit, clock
        self.ledger = InMemoryLedger()
        self._tables = _Tables()
        self._lock = threading.RLock()
        self._down = ""  # why every call fails (closed, or disconnected for a drill)

    # ---- lifecycle ----------------------------------------------------------------------
    def ping(self) -> None:
        with self._lock:
            self._check_up()

    def close(self) -> None:
        with self._lock:
            self._tables, self.ledger = _Tables(), InMemoryLedger()
            self._down = "the in-memory store is closed"

    def disconnect(self) -> None:
        self._down = "the in-memory store is disconnected (an outage drill)"

    def reconnect(self) -> None:
        if self._down.endswith("(an outage drill)"):
            self._down = ""

    def _check_up(self) -> None:
        if self._down:
            raise StoreUnavailableError(self._down)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_up()
            saved = self._tables.copy()
            try:
                yield
            except BaseException:
                self._tables = saved
                raise

    @contextmanager
    def _reading(self) -> Iterator[_Tables]:
        with self._lock:
            self._check_up()
            yield self._tables

    # ---- primitives of the shared write algorithm ---------------------------------------
    def _read_current(self, tenant_id: str) -> ConfigRecord | None:
        record = self._tables.current.get(tenant_id)
        return None if record is None else replace(record, config=_thawed(record.config))

    def _max_history_version(self, tenant_id: str) -> int:
        return max((e.version for e in self._tables.history.get(tenant_id, ())), default=0)

    def _put_current(self, record: ConfigRecord) -> None:
        self._tables.current[record.tenant_id] = replace(record, config=_thawed(record.config))

    def _delete_current(self, tenant_id: str) -> None:
        self._tables.current.pop(tenant_id, None)

    def _append_history(self, entry: HistoryEntry) -> None:
        kept = self._tables.history.get(entry.tenant_id, ())
        self._tables.history[entry.tenant_id] = (
            *kept, replace(entry, config=_thawed(entry.config)))

    def _trim_history(self, tenant_id: str, keep_from_version: int) -> None:
        kept = self._tables.history.get(tenant_id, ())
        self._tables.history[tenant_id] = tuple(e for e in kept if e.version >= keep_from_version)

    def _append_audit(self, at: str, tenant_id: str, change: Change, version: int | None,
                      diff: dict[str, Any]) -> None:
        audit = self._tables.audit
        audit.append(AuditEntry(len(audit) + 1, at, change.actor, change.role, tenant_id,
                                change.action, version, _thawed(diff), change.reason))

    def _count_audit(self, at: str, tenant_id: str, change: Change, aggregate_key: str) -> None:
        tables = self._tables
        index = tables.aggregates.get(aggregate_key)
        if index is None:
            self._append_audit(at, tenant_id, change, None, {})
            tables.aggregates[aggregate_key] = len(tables.audit) - 1
        else:
            row = tables.audit[index]
            tables.audit[index] = replace(row, at=at, count=row.count + 1)

    def _is_locked(self, tenant_id: str) -> bool:
        return tenant_id in self._tables.locks

    def _put_lock(self, tenant_id: str, at: str, change: Change) -> None:
        self._tables.locks.add(tenant_id)

    def _drop_lock(self, tenant_id: str) -> None:
        self._tables.locks.discard(tenant_id)

    def _insert_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        if record.key_id in self._tables.keys:  # the SQL stores' primary key refuses it too
            raise ValueError(f"duplicate API key id {record.key_id!r}")
        self._tables.keys[record.key_id] = (record, key_hash)

    def _read_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        record, _ = self._tables.keys.get(key_id, (None, ""))
        return record if record is not None and record.tenant_id == tenant_id else None

    def _set_key_end(self, key_id: str, revoked_at: str, revoked_by: str) -> None:
        record, key_hash = self._tables.keys[key_id]
        self._tables.keys[key_id] = (replace(record, revoked_at=revoked_at,
                                             revoked_by=revoked_by), key_hash)

    def _insert_session(self, session: SessionRecord) -> None:
        self._tables.sessions[session.token_hash] = replace(session, key_revoked_at=None)

    def _purge_sessions(self, now: str) -> None:
        sessions = self._tables.sessions
        for token_hash, s in list(sessions.items()):
            if s.expires_at <= now or (s.ended_at is not None and s.ended_at <= now):
                del sessions[token_hash]

    def _insert_logged_query(self, entry: LoggedQuery) -> None:
        tables = self._tables
        tables.query_log[entry.tenant_id] = (
            *tables.query_log.get(entry.tenant_id, ()),
            replace(entry, id=tables.next_query_id))
        tables.next_query_id += 1

    def _trim_query_log(self, tenant_id: str, keep: int, not_before: str | None) -> int:
        logged = self._tables.query_log.get(tenant_id, ())
        kept = tuple(e for e in logged[max(len(logged) - keep, 0):]
                     if e.at >= (not_before or ""))
        if kept:
            self._tables.query_log[tenant_id] = kept
        else:
            self._tables.query_log.pop(tenant_id, None)
        return len(logged) - len(kept)

    def _insert_cost_alert(self, alert: CostAlert) -> bool:
        return self.ledger.record_cost_alert(alert)

    # ---- reads ----------------------------------------------------------------------------
    def get(self, tenant_id: str) -> ConfigRecord | None:
        with self._reading():
            return self._read_current(tenant_id)

    def get_many(self, tenant_ids: list[str] | None = None) -> list[ConfigRecord]:
        with self._reading() as tables:
            wanted = sorted(tables.current if tenant_ids is None
                            else set(tenant_ids) & tables.current.keys())
            return [r for r in map(self._read_current, wanted) if r is not None]

    def list_tenants(self, limit: int = 100, offset: int = 0) -> list[str]:
        with self._reading() as tables:
            return sorted(tables.current)[offset:offset + limit]

    def count_tenants(self) -> int:
        with self._reading() as tables:
            return len(tables.current)

    def history(self, tenant_id: str) -> list[HistoryEntry]:
        with self._reading() as tables:
            return [replace(e, config=_thawed(e.config))
                    for e in reversed(tables.history.get(tenant_id, ()))]

    def audit(self, tenant_id: str | None = None, limit: int = 100,
              offset: int = 0) -> list[AuditEntry]:
        with self._reading() as tables:
            rows = [e for e in reversed(tables.audit) if tenant_id in (None, e.tenant_id)]
            return [replace(e, diff=_thawed(e.diff)) for e in rows[offset:offset + limit]]

    def is_locked(self, tenant_id: str) -> bool:
        with self._reading():
            return self._is_locked(tenant_id)

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        with self._reading() as tables:
            return next((r for r, h in tables.keys.values() if h == key_hash), None)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        with self._reading() as tables:
            return sorted((r for r, _ in tables.keys.values() if r.tenant_id == tenant_id),
                          key=lambda r: (r.created_at, r.key_id))

    def touch_api_key(self, key_id: str, at: str) -> None:
        with self._transaction():
            if key_id in self._tables.keys:
                record, key_hash = self._tables.keys[key_id]
                self._tables.keys[key_id] = (replace(record, last_used_at=at), key_hash)

    def find_session(self, token_hash: str) -> SessionRecord | None:
        with self._reading() as tables:
            session = tables.sessions.get(token_hash)
            if session is None:
                return None
            key, _ = tables.keys.get(session.key_id, (None, ""))
            return replace(session, key_revoked_at=None if key is None else key.revoked_at)

    def end_session(self, token_hash: str) -> bool:
        with self._transaction():
            session = self._tables.sessions.get(token_hash)
            if session is None or session.ended_at is not None:
                return False
            self._tables.sessions[token_hash] = replace(session, ended_at=self._now())
            return True

    def query_log(self, tenant_id: str, *, limit: int,
                  max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> list[LoggedQuery]:
        with self._reading() as tables:
            not_before = self._days_ago(max_age_days)
            return [e for e in reversed(tables.query_log.get(tenant_id, ()))
                    if e.at >= not_before][:limit]

    # ---- usage ledger -------------------------------------------------------------------
    def record_usage_many(self, deltas: list[UsageDelta]) -> None:
        with self._reading():
            self.ledger.record_usage_many(deltas)

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        with self._reading():
            return self.ledger.reserve_query(tenant_id, day, daily_queries=daily_queries,
                                             monthly_budget_usd=monthly_budget_usd)

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        with self._reading():
            return self.ledger.usage_totals(tenant_id, day)

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        with self._reading():
            return self.ledger.cost_alerts(tenant_id, month, limit)
