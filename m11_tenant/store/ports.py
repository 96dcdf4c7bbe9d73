# ruff: noqa: F405 -- names from the records module's star import
"""The narrow ports of the source of truth: each consumer types against the one it uses.

- :class:`ConfigStore`: tenant configs, their version history, transactional writes and
  listing (the repository's read and write paths).
- :class:`AuditLog`: the append-only log of who changed what, and refused attempts.
- :class:`KeyStore`: per-tenant API keys and the console sessions signed in with them
  (a session ends when its key is revoked, so both live in one port).
- :class:`LockStore`: a tenant's lock against platform bulk changes.
- :class:`UsageLedger`: the pipeline's quota/budget gate, settlements and cost alerts;
  :class:`BatchingLedger` adds the group commit :class:`~m11_tenant.rag.ledger.
  WriteBehindLedger` needs.
- :class:`QueryLog`: the opt-in log of a tenant's questions (kept apart from usage: it
  holds question text, and its retention follows the tenant's config, trimmed inside the
  config write that lowers it).

:class:`Store` is all of them, what :func:`~m11_tenant.store.open_store` returns: SQLite,
PostgreSQL and the in-memory twin implement every port, and the contract suites in
``tests/test_store*.py`` and ``tests/test_rag_ledger.py`` run on each.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol, runtime_checkable

from m11_tenant.store.records import *  # noqa: F403 -- the store's vocabulary (records.__all__)


class ConfigStore(Protocol):
    """Tenant configs and their history; every write is one transaction."""

    url: str
    clock: Clock  # stored times come from it

    def get(self, tenant_id: str) -> ConfigRecord | None: ...

    def get_many(self, tenant_ids: list[str] | None = None) -> list[ConfigRecord]: ...

    def write(self, tenant_id: str, build: BuildConfig, change: Change) -> ConfigRecord: ...

    def write_many(self, builds: Mapping[str, BuildConfig], change: Change,
                   when_locked: tuple[Change, Mapping[str, BuildConfig]] | None = None,
                   ) -> tuple[list[ConfigRecord], list[str]]: ...

    def delete(self, tenant_id: str, change: Change) -> ConfigRecord: ...

    def list_tenants(self, limit: int = 100, offset: int = 0) -> list[str]: ...

    def count_tenants(self) -> int: ...

    def history(self, tenant_id: str) -> list[HistoryEntry]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    def disconnect(self) -> None:
        """Fail every call as a lost database does, until :meth:`reconnect` (outage drills
        in notebooks and tests; nothing stored is lost)."""
        ...

    def reconnect(self) -> None: ...


class AuditLog(Protocol):
    """The append-only audit log (writes through :class:`ConfigStore` audit themselves)."""

    def audit(self, tenant_id: str | None = None, limit: int = 100,
              offset: int = 0) -> list[AuditEntry]: ...

    def record_audit(self, tenant_id: str, change: Change, diff: dict[str, Any] | None = None,
                     version: int | None = None) -> None: ...

    def record_refusal(self, tenant_id: str, change: Change, window_seconds: int) -> None: ...


class KeyStore(Protocol):
    """Per-tenant API keys (hashes only) and console sessions (token hashes only)."""

    def now(self) -> str: ...

    def add_api_key(self, tenant_id: str, key_id: str, key_hash: str,
                    change: Change) -> ApiKeyRecord: ...

    def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]: ...

    def revoke_api_key(self, tenant_id: str, key_id: str,
                       change: Change) -> tuple[ApiKeyRecord, bool] | None: ...

    def rotate_api_key(self, tenant_id: str, key_id: str, new_key_id: str, new_key_hash: str,
                       change: Change, grace_seconds: int = 0) -> ApiKeyRecord | None: ...

    def touch_api_key(self, key_id: str, at: str) -> None: ...

    def create_session(self, session: SessionRecord) -> None: ...

    def find_session(self, token_hash: str) -> SessionRecord | None: ...

    def end_session(self, token_hash: str) -> bool: ...


class LockStore(Protocol):
    """A tenant's lock against platform bulk changes (audited when it changes)."""

    def set_locked(self, tenant_id: str, locked: bool, change: Change) -> bool: ...

    def is_locked(self, tenant_id: str) -> bool: ...


@runtime_checkable
class UsageLedger(Protocol):
    """Per-tenant, per-day usage: the store's side of plan enforcement."""

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        """Count one query for ``day`` if fewer than ``daily_queries`` are counted and the
        month's spend is below ``monthly_budget_usd``, atomically, and return the month's
        recorded spend; None (nothing counted) otherwise."""
        ...

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        """Add these amounts to the tenant's row for ``day`` (creating it if needed)."""
        ...

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        """Queries recorded on ``day``; cost recorded from the 1st of ``day``'s month to ``day``."""
        ...

    def record_cost_alert(self, alert: CostAlert) -> bool:
        """Keep (and audit, where there is an audit log) a cost alert unless already
        recorded for its tenant, month and threshold; True if this call recorded it."""
        ...

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        """Recorded cost alerts, newest first; optionally one tenant's and/or one month's."""
        ...


class BatchingLedger(UsageLedger, Protocol):
    """A ledger that takes many settlements in one transaction (group commit)."""

    def record_usage_many(self, deltas: list[UsageDelta]) -> None: ...


class QueryLog(Protocol):
    """A tenant's opt-in log of answered questions (redacted before they get here)."""

    def append_query_log(self, entry: LoggedQuery, *, keep: int,
                         max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> None: ...

    def query_log(self, tenant_id: str, *, limit: int,
                  max_age_days: int = QUERY_LOG_MAX_AGE_DAYS) -> list[LoggedQuery]: ...

    def clear_query_log(self, tenant_id: str, change: Change) -> int: ...


class Store(ConfigStore, AuditLog, KeyStore, LockStore, BatchingLedger, QueryLog, Protocol):
    """Every port at once: what a backend implements and the repository is built on."""
