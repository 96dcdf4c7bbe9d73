"""Where the pipeline records spend: a two-method protocol the store implements.

The pipeline calls :meth:`UsageLedger.usage_totals` before a query (quota and budget
checks) and :meth:`UsageLedger.record_usage` after a successful one. Rows are per tenant per
UTC day; ``record_usage`` adds to that day's row (an upsert that increments), so it must be
atomic in a real database (one ``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``).

:class:`InMemoryLedger` is the in-memory twin for notebooks and tests.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import Protocol, runtime_checkable

from m11_tenant.store.base import UsageTotals

__all__ = ["InMemoryLedger", "UsageLedger", "UsageTotals"]


@runtime_checkable
class UsageLedger(Protocol):
    """Per-tenant, per-day usage: the store's side of plan enforcement."""

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        """Add these amounts to the tenant's row for ``day`` (creating it if needed)."""
        ...

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        """Queries recorded on ``day``; cost recorded from the 1st of ``day``'s month to ``day``."""
        ...


class InMemoryLedger:
    """A dict-backed :class:`UsageLedger` (thread-safe; forgets everything on exit)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, date], dict[str, float]] = {}
        self._lock = threading.Lock()

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        with self._lock:
            row = self.rows.setdefault((tenant_id, day), {
                "queries": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
            row["queries"] += queries
            row["prompt_tokens"] += prompt_tokens
            row["completion_tokens"] += completion_tokens
            row["cost_usd"] += cost_usd

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        with self._lock:
            today = self.rows.get((tenant_id, day), {})
            month = sum(r["cost_usd"] for (t, d), r in self.rows.items()
                        if t == tenant_id and (d.year, d.month) == (day.year, day.month)
                        and d <= day)
        return UsageTotals(
            queries_today=int(today.get("queries", 0)),
            cost_today_usd=float(today.get("cost_usd", 0.0)),
            cost_month_usd=month,
            tokens_today=int(today.get("prompt_tokens", 0) + today.get("completion_tokens", 0)),
        )
