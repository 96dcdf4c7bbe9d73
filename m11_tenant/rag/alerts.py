"""Cost alerts: a tenant's spend this month reaching a share of its plan's monthly budget.

Each tenant chooses its thresholds (``cost_alert_thresholds`` in its config, percent of the
monthly budget; default 50, 80 and 100). After a query's cost is settled, the thresholds the
month's spend has reached are recorded — once per tenant, month and threshold — in the
store, which also writes the audit line; ``/metrics`` and the console read them back.

The decision is pure (:func:`reached_thresholds`); :class:`CostAlerts` adds a small memo
of what this process already recorded, so the store is written only when a new threshold
is reached (not on every query past 50 %), and the store's key makes "once" hold across
processes. A crossing missed by a stale read (two queries settling at once) is caught by
the next query, whose spend includes both.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from m11_tenant.rag.ledger import UsageLedger
from m11_tenant.store import CostAlert

__all__ = ["CostAlerts", "month_of", "reached_thresholds"]


def reached_thresholds(spent_usd: float, budget_usd: float,
                       thresholds_pct: Sequence[int]) -> list[int]:
    """The thresholds (percent of ``budget_usd``) that ``spent_usd`` has reached, ascending.

    A zero or negative budget reaches nothing (there is no share of it to speak of).
    """
    if budget_usd <= 0:
        return []
    return sorted(pct for pct in set(thresholds_pct) if spent_usd >= budget_usd * pct / 100)


def month_of(now: datetime) -> str:
    """``YYYY-MM`` of ``now`` (UTC): budgets and alerts reset on the 1st."""
    return f"{now.year:04d}-{now.month:02d}"


class CostAlerts:
    """Records the cost alerts a settled query's spend has reached, each once.

    Args:
        store: the usage ledger the pipeline settles into; alerts are recorded (and, by
            the SQL stores, audited) there.
    """

    def __init__(self, store: UsageLedger):
        self.store = store
        # tenant -> (month, thresholds recorded this month by or known to this process);
        # one entry per tenant, replaced when the month turns: bounded by the tenant count.
        self._known: dict[str, tuple[str, frozenset[int]]] = {}
        self._lock = threading.Lock()

    def settle(self, tenant_id: str, *, spent_month_usd: float, budget_usd: float,
               thresholds_pct: Sequence[int], now: datetime) -> list[CostAlert]:
        """Record the thresholds ``spent_month_usd`` reached that were not recorded yet.

        Returns the alerts this call recorded (empty when nothing new was reached, or when
        another process recorded it first).
        """
        month = month_of(now)
        reached = reached_thresholds(spent_month_usd, budget_usd, thresholds_pct)
        new = [pct for pct in reached if pct not in self._known_for(tenant_id, month)]
        at = now.isoformat(timespec="seconds")
        recorded = []
        for pct in new:
            alert = CostAlert(tenant_id, month, pct, round(spent_month_usd, 6), budget_usd, at)
            if self.store.record_cost_alert(alert):  # False: another process was first
                recorded.append(alert)
            self._remember(tenant_id, month, pct)  # only once stored: a failure retries
        return recorded

    def _known_for(self, tenant_id: str, month: str) -> frozenset[int]:
        with self._lock:
            return self._known_for_locked(tenant_id, month)

    def _remember(self, tenant_id: str, month: str, pct: int) -> None:
        with self._lock:
            self._known[tenant_id] = (month, self._known_for_locked(tenant_id, month) | {pct})

    def _known_for_locked(self, tenant_id: str, month: str) -> frozenset[int]:
        known_month, known = self._known.get(tenant_id, (month, frozenset()))
        return known if known_month == month else frozenset()
