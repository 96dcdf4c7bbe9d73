"""Where the pipeline records spend: a small protocol the store implements.

The pipeline calls :meth:`UsageLedger.usage_totals` before a query (quota and budget
checks), :meth:`UsageLedger.record_usage` after a successful one, and
:meth:`UsageLedger.record_cost_alert` when the month's spend reaches one of the tenant's
alert thresholds (``m11_tenant.rag.alerts``). Rows are per tenant per
UTC day; ``record_usage`` adds to that day's row (an upsert that increments), so it must be
atomic in a real database (one ``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``).

:class:`InMemoryLedger` is the in-memory twin for notebooks and tests.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import Protocol, runtime_checkable

from m11_tenant.store.base import CostAlert, UsageTotals

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

    def record_cost_alert(self, alert: CostAlert) -> bool:
        """Keep (and audit, where there is an audit log) a cost alert unless already
        recorded for its tenant, month and threshold; True if this call recorded it."""
        ...


class InMemoryLedger:
    """A dict-backed :class:`UsageLedger` (thread-safe; forgets everything on exit)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, date], dict[str, float]] = {}
        self.alerts: dict[tuple[str, str, int], CostAlert] = {}
        self._lock = threading.Lock()

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
        found.sort(key=lambda a: (a.month, a.at, a.threshold_pct), reverse=True)
        return found[:limit]

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
