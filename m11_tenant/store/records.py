"""The records every store reads and writes, and the values that say who is writing.

Plain frozen dataclasses with no I/O: the ports (:mod:`m11_tenant.store.ports`) speak in
them, and every backend (SQLite, PostgreSQL, the in-memory twin) returns them, so a caller
never sees a row, a cursor or a driver type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from m11_tenant.text import check_text

__all__ = ["BULK_ROLE", "PLATFORM_ROLES", "QUERY_LOG_MAX_AGE_DAYS", "ApiKeyRecord", "AuditEntry",
           "BuildConfig", "Change", "Clock", "ConfigRecord", "CostAlert", "HistoryEntry",
           "LoggedQuery", "SessionRecord", "UsageDelta", "UsageTotals", "locked_message"]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ConfigRecord:
    """The current stored config of one tenant, with its version and who wrote it."""

    tenant_id: str
    config: dict[str, Any]
    version: int
    updated_at: str
    updated_by: str


@dataclass(frozen=True)
class HistoryEntry:
    """One stored version of a tenant's config (the newest is the current one)."""

    tenant_id: str
    version: int
    config: dict[str, Any]
    created_at: str
    created_by: str
    action: str


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit log: who did what to which tenant, when and why."""

    id: int
    at: str
    actor: str
    role: str
    tenant_id: str
    action: str
    version: int | None
    diff: dict[str, Any]
    reason: str | None
    count: int = 1  # refused attempts: how many in the row's window (see record_refusal)


@dataclass(frozen=True)
class Change:
    """Who is making a write and why; ``expected_version`` turns on optimistic concurrency.

    ``expected_version=0`` means "only if nothing is stored yet".
    """

    actor: str = "system"
    role: str = "admin"
    action: str = "update"
    reason: str | None = None
    expected_version: int | None = None

    def __post_init__(self) -> None:
        # The last line of defence for the audit log: whatever path a write took (API,
        # console, CLI import, notebook), its who and why are one line of plain text.
        check_text(self.actor, "actor")
        if self.reason is not None:
            check_text(self.reason, "reason")


def locked_message(tenant_id: str) -> str:
    """Why a bulk change skipped a locked tenant: the store's refusal and the API's report
    of skipped tenants say the same thing."""
    return (f"tenant {tenant_id!r} has locked its config against platform bulk changes, so "
            "it was skipped; change it on its own, or ask the tenant to unlock it")


#: The role a platform bulk change writes with: a tenant that locked its config is skipped
#: (``write`` raises :class:`~m11_tenant.errors.TenantLockedError` inside the transaction).
BULK_ROLE = "platform-bulk"
#: The roles that act for the platform and may change platform-owned fields (``plan``);
#: every other role (a tenant key, a tenant's console session) may not.
PLATFORM_ROLES = frozenset({"admin", "system", BULK_ROLE})


@dataclass(frozen=True)
class ApiKeyRecord:
    """A per-tenant API key as stored: its public id, never the key (only a hash is kept).

    ``revoked_at`` is when the key stops working: the past for a revoked key, the end of
    the grace period for a rotated one, None while it has no end.
    """

    key_id: str
    tenant_id: str
    created_at: str
    created_by: str
    revoked_at: str | None = None
    revoked_by: str | None = None
    last_used_at: str | None = None

    def active(self, now: str) -> bool:
        """Whether the key is accepted at ``now`` (an ISO time like the stored ones)."""
        return self.revoked_at is None or now < self.revoked_at


@dataclass(frozen=True)
class SessionRecord:
    """A console sign-in as stored: never the cookie's token, only its SHA-256.

    ``key_id`` is the tenant key it was signed in with (``admin:<fingerprint>`` for the
    admin key); ``key_revoked_at`` is that key's end, joined in when the session is read.
    """

    token_hash: str
    role: str
    actor: str
    tenant_id: str | None
    key_id: str
    csrf: str
    created_at: str
    expires_at: str
    ended_at: str | None = None
    key_revoked_at: str | None = None


@dataclass(frozen=True)
class UsageTotals:
    """What a tenant has used: queries today and spend this calendar month."""

    queries_today: int = 0
    cost_today_usd: float = 0.0
    cost_month_usd: float = 0.0
    tokens_today: int = 0


@dataclass(frozen=True)
class UsageDelta:
    """Amounts to add to one tenant's row for one UTC day (negative ``queries`` releases)."""

    tenant_id: str
    day: date
    queries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class LoggedQuery:
    """One question of a tenant's opt-in query log, as stored (already redacted).

    No answer text is kept: a replay re-runs the question, it does not need the old answer.
    """

    tenant_id: str
    question: str
    source_ids: tuple[str, ...]
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    at: str = ""  # set by the store's clock when it is appended
    id: int = 0


#: Days a logged question is kept at most (retention by age; ``query_log_size`` is by count).
QUERY_LOG_MAX_AGE_DAYS = 30


@dataclass(frozen=True)
class CostAlert:
    """A tenant's spend this month reached ``threshold_pct`` % of its plan's monthly budget.

    Stored once per tenant, month (``YYYY-MM``, UTC) and threshold, whatever number of
    processes noticed the crossing.
    """

    tenant_id: str
    month: str
    threshold_pct: int
    spent_usd: float
    budget_usd: float
    at: str


# Builds the new config dict from the current record (None when nothing is stored). It
# runs inside the write transaction, so a merge reads and writes atomically.
BuildConfig = Callable[[ConfigRecord | None], dict[str, Any]]
