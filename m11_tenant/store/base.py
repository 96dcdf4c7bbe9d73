# ruff: noqa: F405 -- names from the records module's star import
"""The write algorithm every store shares; a backend supplies only the primitives.

One place decides what a write means (check the expected version, build the new config,
number it, keep the last N versions, append the audit line), so SQLite, PostgreSQL and the
in-memory twin cannot drift apart. The records live in :mod:`m11_tenant.store.records`,
the ports in :mod:`m11_tenant.store.ports`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from m11_tenant.diff import config_diff
from m11_tenant.errors import ConfigNotFoundError, TenantLockedError, VersionConflictError
from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)


class TransactionalStore(ABC):
    """The write algorithm every SQL backend shares; backends supply the primitives.

    One place decides what a write means (check the expected version, build the new
    config, number it, keep the last N versions, append the audit line), so SQLite and
    PostgreSQL cannot drift apart. Backends implement the ``_``-prefixed primitives, each
    called inside the transaction that ``_transaction()`` opens.
    """

    url: str
    history_limit: int
    clock: Clock

    # ---- primitives a backend implements -------------------------------------------
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """Open a write transaction: commit on success, roll back on any error."""

    @abstractmethod
    def _read_current(self, tenant_id: str) -> ConfigRecord | None:
        """The current record, read so that no other writer can change it before commit."""

    @abstractmethod
    def _max_history_version(self, tenant_id: str) -> int:
        """The highest version ever kept for the tenant (0 if none); versions never repeat."""

    @abstractmethod
    def _put_current(self, record: ConfigRecord) -> None:
        """Insert or replace the tenant's current record."""

    @abstractmethod
    def _delete_current(self, tenant_id: str) -> None:
        """Remove the tenant's current record."""

    @abstractmethod
    def _append_history(self, entry: HistoryEntry) -> None:
        """Add one version to the history table."""

    @abstractmethod
    def _trim_history(self, tenant_id: str, keep_from_version: int) -> None:
        """Drop the tenant's versions older than ``keep_from_version``."""

    @abstractmethod
    def _append_audit(self, at: str, tenant_id: str, change: Change, version: int | None,
                      diff: dict[str, Any]) -> None:
        """Append one line to the audit log."""

    @abstractmethod
    def _count_audit(self, at: str, tenant_id: str, change: Change, aggregate_key: str) -> None:
        """Add one to the audit row named ``aggregate_key`` (``at`` becomes the latest
        time), or insert it with a count of 1."""

    @abstractmethod
    def _is_locked(self, tenant_id: str) -> bool:
        """Whether the tenant's lock row exists (read inside the current transaction)."""

    @abstractmethod
    def _put_lock(self, tenant_id: str, at: str, change: Change) -> None:
        """Insert the tenant's lock row."""

    @abstractmethod
    def _drop_lock(self, tenant_id: str) -> None:
        """Delete the tenant's lock row."""

    @abstractmethod
    def _insert_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        """Insert one API key row (its hash, never the key)."""

    @abstractmethod
    def _read_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        """The tenant's key ``key_id`` (None when it has no such key)."""

    @abstractmethod
    def _set_key_end(self, key_id: str, revoked_at: str, revoked_by: str) -> None:
        """Set when the key stops working, and who decided it."""

    @abstractmethod
    def _insert_session(self, session: SessionRecord) -> None:
        """Insert one console session row."""

    @abstractmethod
    def _purge_sessions(self, now: str) -> None:
        """Delete sessions that expired or ended before ``now``."""

    @abstractmethod
    def _insert_logged_query(self, entry: LoggedQuery) -> None:
        """Append one question to the tenant's query log (serialised per tenant)."""

    @abstractmethod
    def _trim_query_log(self, tenant_id: str, keep: int, not_before: str | None) -> int:
        """Keep the tenant's ``keep`` newest questions not older than ``not_before``;
        return how many were dropped."""

    @abstractmethod
    def _insert_cost_alert(self, alert: CostAlert) -> bool:
        """Insert the alert unless one exists for its tenant, month and threshold; True if
        this call inserted it."""

    # ---- the shared algorithm ------------------------------------------------------
    def _now(self) -> str:
        return self.clock().isoformat(timespec="seconds")

    def now(self) -> str:
        """The store's current time, as stored times are written (keys and sessions
        compare against it, so one clock decides whether a key is still active)."""
        return self._now()

    def _days_ago(self, days: int) -> str:
        return (self.clock() - timedelta(days=days)).isoformat(timespec="seconds")

    def write(self, tenant_id: str, build: BuildConfig, change: Change) -> ConfigRecord:
        """Build and store a new version atomically; a stale ``expected_version`` fails."""
        with self._transaction():
            if change.role == BULK_ROLE and self._is_locked(tenant_id):
                raise TenantLockedError(locked_message(tenant_id))
            return self._write_in_transaction(tenant_id, build, change)

    def write_many(self, builds: Mapping[str, BuildConfig], change: Change,
                   when_locked: tuple[Change, Mapping[str, BuildConfig]] | None = None,
                   ) -> tuple[list[ConfigRecord], list[str]]:
        """Write several tenants in ONE transaction: all of them, or (on any error) none.

        With the bulk role a locked tenant is skipped, not an error -- or, when
        ``when_locked`` gives a change and a build for it, written with those instead (the
        platform-owned part of a bulk change, which a lock does not cover). Returns the
        records written and the tenant ids skipped.
        """
        written: list[ConfigRecord] = []
        skipped: list[str] = []
        with self._transaction():
            for tenant_id, build in builds.items():
                if change.role != BULK_ROLE or not self._is_locked(tenant_id):
                    written.append(self._write_in_transaction(tenant_id, build, change))
                elif when_locked is not None and tenant_id in when_locked[1]:
                    written.append(self._write_in_transaction(
                        tenant_id, when_locked[1][tenant_id], when_locked[0]))
                else:
                    skipped.append(tenant_id)
        return written, skipped

    def _write_in_transaction(self, tenant_id: str, build: BuildConfig,
                              change: Change) -> ConfigRecord:
        current = self._read_current(tenant_id)
        current_version = current.version if current else 0
        if change.expected_version is not None and change.expected_version != current_version:
            raise VersionConflictError(tenant_id, change.expected_version, current_version)
        config = build(current)
        version = max(current_version, self._max_history_version(tenant_id)) + 1
        now = self._now()
        record = ConfigRecord(tenant_id, config, version, now, change.actor)
        self._put_current(record)
        self._append_history(
            HistoryEntry(tenant_id, version, config, now, change.actor, change.action)
        )
        self._trim_history(tenant_id, version - self.history_limit + 1)
        # A lowered query_log_size (0: the log is off) applies at once, in this transaction.
        self._trim_query_log(tenant_id, int(config.get("query_log_size", 0)), None)
        self._append_audit(now, tenant_id, change, version,
                           config_diff(current.config if current else None, config))
        return record

    def delete(self, tenant_id: str, change: Change) -> ConfigRecord:
        """Remove the current config (history stays, so a later rollback can restore it)."""
        with self._transaction():
            current = self._read_current(tenant_id)
            if current is None:
                raise ConfigNotFoundError(
                    f"tenant {tenant_id!r} has no stored config to delete (it already uses "
                    "the defaults)"
                )
            if change.expected_version is not None and change.expected_version != current.version:
                raise VersionConflictError(tenant_id, change.expected_version, current.version)
            self._delete_current(tenant_id)
            self._trim_query_log(tenant_id, 0, None)  # the defaults keep no query log
            self._append_audit(self._now(), tenant_id, change, current.version,
                               config_diff(current.config, None))
            return current

    def record_audit(self, tenant_id: str, change: Change, diff: dict[str, Any] | None = None,
                     version: int | None = None) -> None:
        """Append an audit line that goes with no write (a refused attempt, an import plan)."""
        with self._transaction():
            self._append_audit(self._now(), tenant_id, change, version, diff or {})

    def record_refusal(self, tenant_id: str, change: Change, window_seconds: int) -> None:
        """Count a refused attempt in ONE audit row per tenant, actor, action and reason
        per window of ``window_seconds`` (UTC-aligned), so repeating it cannot flood the log.
        """
        now = self.clock()
        start = int(now.timestamp()) // window_seconds * window_seconds
        key = hashlib.sha256(json.dumps(
            [start, tenant_id, change.actor, change.role, change.action, change.reason]
        ).encode()).hexdigest()
        with self._transaction():
            self._count_audit(now.isoformat(timespec="seconds"), tenant_id, change, key)

    def set_locked(self, tenant_id: str, locked: bool, change: Change) -> bool:
        """Lock or unlock the tenant against bulk changes; False when already in that state."""
        with self._transaction():
            if self._is_locked(tenant_id) == locked:
                return False
            now = self._now()
            if locked:
                self._put_lock(tenant_id, now, change)
            else:
                self._drop_lock(tenant_id)
            self._append_audit(now, tenant_id, change, None, {"locked": [not locked, locked]})
            return True

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        """Add these amounts to the tenant's row for ``day`` (one delta of
        :meth:`record_usage_many`)."""
        self.record_usage_many([UsageDelta(tenant_id, day, queries, prompt_tokens,
                                           completion_tokens, cost_usd)])

    @abstractmethod
    def record_usage_many(self, deltas: list[UsageDelta]) -> None:
        """Add every delta to its (tenant, day) row, creating rows as needed, in ONE
        transaction committed without waiting for the disk: usage counters are the one
        thing a power cut may roll back by its last moments (config writes never are)."""

    @abstractmethod
    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        """The quota and budget gate: count one query for ``day`` if and only if fewer than
        ``daily_queries`` are counted that day and the month's recorded spend (1st to
        ``day``) is below ``monthly_budget_usd`` — checked and counted in ONE statement, so
        concurrent callers (threads, processes, servers) can never overshoot the quota.
        Returns the month's recorded spend (for cost alerts), or None, counting nothing,
        when either limit is reached."""

    def add_api_key(self, tenant_id: str, key_id: str, key_hash: str,
                    change: Change) -> ApiKeyRecord:
        """Store a new key's hash for the tenant, and audit who created it."""
        with self._transaction():
            now = self._now()
            record = ApiKeyRecord(key_id, tenant_id, now, change.actor)
            self._insert_api_key(record, key_hash)
            self._append_audit(now, tenant_id, change, None, {"api_key": [None, key_id]})
            return record

    def revoke_api_key(self, tenant_id: str, key_id: str,
                       change: Change) -> tuple[ApiKeyRecord, bool] | None:
        """End the tenant's key now; ``(record, changed)``, or None when there is no such key.

        Revoking a revoked key changes nothing (``changed`` False); revoking a key in its
        rotation grace period ends it now.
        """
        with self._transaction():
            record = self._read_api_key(tenant_id, key_id)
            if record is None:
                return None
            now = self._now()
            if not record.active(now):
                return record, False
            self._set_key_end(key_id, now, change.actor)
            self._append_audit(now, tenant_id, change, None, {"api_key": [key_id, None]})
            return replace(record, revoked_at=now, revoked_by=change.actor), True

    def rotate_api_key(self, tenant_id: str, key_id: str, new_key_id: str, new_key_hash: str,
                       change: Change, grace_seconds: int = 0) -> ApiKeyRecord | None:
        """Issue a new key for the tenant and end ``key_id`` after ``grace_seconds``, in one
        transaction (both or neither); None when the tenant has no such active key."""
        with self._transaction():
            old = self._read_api_key(tenant_id, key_id)
            now = self._now()
            if old is None or not old.active(now):
                return None
            ends = (self.clock() + timedelta(seconds=grace_seconds)).isoformat(
                timespec="seconds")
            if old.revoked_at is not None:
                ends = min(ends, old.revoked_at)  # a rotation never extends a key's life
            record = ApiKeyRecord(new_key_id, tenant_id, now, change.actor)
            self._insert_api_key(record, new_key_hash)
            self._set_key_end(key_id, ends, change.actor)
            self._append_audit(now, tenant_id, change, None, {"api_key": [key_id, new_key_id]})
            return record

    def create_session(self, session: SessionRecord) -> None:
        """Store a console sign-in (and drop the ones that ended or expired)."""
        with self._transaction():
            self._purge_sessions(self._now())
            self._insert_session(session)

    def append_query_log(self, entry: LoggedQuery, *, keep: int,
                         max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> None:
        """Log one question, then drop what is past ``keep`` entries or ``max_age_days``.

        Both happen in one transaction, so no reader ever sees more than ``keep`` entries.
        """
        with self._transaction():
            self._insert_logged_query(replace(entry, at=self._now()))
            self._trim_query_log(entry.tenant_id, keep, self._days_ago(max_age_days))

    def clear_query_log(self, tenant_id: str, change: Change) -> int:
        """Delete the tenant's whole query log; audit how many questions went."""
        with self._transaction():
            dropped = self._trim_query_log(tenant_id, 0, None)
            self._append_audit(self._now(), tenant_id, change, None,
                               {"query_log": [dropped, 0]})
            return dropped

    def record_cost_alert(self, alert: CostAlert) -> bool:
        """Store a cost alert and audit it, once per tenant, month and threshold.

        Returns False (and writes nothing) when that crossing was already recorded, e.g.
        by another process that settled a query at the same time.
        """
        with self._transaction():
            if not self._insert_cost_alert(alert):
                return False
            reason = (f"spent ${alert.spent_usd:.2f} of the ${alert.budget_usd:.2f} monthly "
                      f"budget: {alert.threshold_pct}% reached in {alert.month}")
            self._append_audit(alert.at, alert.tenant_id,
                               Change("platform", "system", "cost_alert", reason), None,
                               {"cost_alert_pct": [None, alert.threshold_pct]})
            return True
