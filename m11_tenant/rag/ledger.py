"""Where the pipeline counts and records spend: a small protocol the store implements.

A query goes through the ledger twice:

1. **reserve** — :meth:`UsageLedger.reserve_query` checks the plan's daily quota and
   monthly budget and counts the query *in the same atomic statement* (an upsert whose
   ``WHERE`` is the limit). Two concurrent queries can never both take the last slot, in
   one process or across servers, with or without Redis.
2. **settle** — after the answer, :meth:`UsageLedger.record_usage` adds its tokens and cost
   (``queries=0``); if the query failed, the same call with ``queries=-1`` gives the slot
   back. :meth:`m11_tenant.rag.pipeline.RagPipeline.query` does this in one place.

Settlements need not be written one transaction each: :class:`WriteBehindLedger` gathers
them for a few milliseconds and writes each batch in one transaction (group commit). The
gate itself is never buffered. Rows are per tenant per UTC day. When the month's spend
reaches one of the tenant's alert thresholds, the pipeline calls
:meth:`UsageLedger.record_cost_alert` (``m11_tenant.rag.alerts``).

:class:`UsageLedger` is the store's port (:mod:`m11_tenant.store.ports`): SQLite, PostgreSQL
and the in-memory :class:`~m11_tenant.store.memory.MemoryStore` implement it, and so does
:class:`InMemoryLedger`, the ledger alone, for notebooks and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date

from m11_tenant.errors import StoreUnavailableError
from m11_tenant.store import BatchingLedger, CostAlert, UsageDelta, UsageLedger, UsageTotals
from m11_tenant.store.memory import InMemoryLedger

__all__ = ["InMemoryLedger", "UsageLedger", "UsageTotals", "WriteBehindLedger"]

log = logging.getLogger(__name__)

#: How long a settlement may wait before its batch is written (seconds).
FLUSH_INTERVAL_S = 0.005
#: How long to wait before retrying a batch the store refused.
RETRY_S = 0.5


class WriteBehindLedger:
    """A store's ledger with group commit for settlements; the gate goes straight through.

    ``record_usage`` adds to an in-process batch (amounts for the same tenant and day are
    summed) and returns at once; a background thread writes the batch every
    ``flush_interval`` seconds in one transaction. ``usage_totals`` writes the batch first,
    so a caller always reads its own settlements. ``close()`` writes what is left.

    What can be lost: the settlements of the last ``flush_interval`` if the process dies
    without ``close()`` (kill -9, power cut) — tokens and cost, never a reserved query slot,
    which the gate wrote before the query ran. If the store is down, the batch is kept and
    retried at the next interval.
    """

    def __init__(self, store: BatchingLedger, *, flush_interval: float = FLUSH_INTERVAL_S):
        self.store, self.flush_interval = store, flush_interval
        self._pending: dict[tuple[str, date], list[float]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one batch in flight at a time
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None  # started by the first settlement

    def reserve_query(self, tenant_id: str, day: date, *, daily_queries: int,
                      monthly_budget_usd: float) -> float | None:
        return self.store.reserve_query(tenant_id, day, daily_queries=daily_queries,
                                        monthly_budget_usd=monthly_budget_usd)

    def record_cost_alert(self, alert: CostAlert) -> bool:
        return self.store.record_cost_alert(alert)  # rare: written at once, durably

    def cost_alerts(self, tenant_id: str | None = None, month: str | None = None,
                    limit: int = 100) -> list[CostAlert]:
        return self.store.cost_alerts(tenant_id, month, limit)

    def record_usage(self, tenant_id: str, day: date, *, queries: int, prompt_tokens: int,
                     completion_tokens: int, cost_usd: float) -> None:
        with self._lock:
            self._merge({(tenant_id, day): [queries, prompt_tokens, completion_tokens,
                                            cost_usd]})
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="usage-write-behind",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def usage_totals(self, tenant_id: str, day: date) -> UsageTotals:
        self.flush()
        return self.store.usage_totals(tenant_id, day)

    @property
    def pending(self) -> int:
        """How many (tenant, day) rows wait to be written."""
        with self._lock:
            return len(self._pending)

    def flush(self) -> None:
        """Write the current batch now, in one transaction (kept for a retry if it fails).

        Raises:
            StoreUnavailableError: the store could not take the batch.
        """
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                self.store.record_usage_many([UsageDelta(t, d, int(q), int(p), int(c), cost)
                                              for (t, d), (q, p, c, cost) in batch.items()])
            except BaseException:
                with self._lock:
                    self._merge(batch)
                raise

    def close(self) -> None:
        """Stop the writer and write what is left (logged if the store is down)."""
        with self._lock:
            self._closed, thread = True, self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        try:
            self.flush()
        except StoreUnavailableError as exc:
            log.error("usage of %d tenant-days could not be written at shutdown: %s",
                      self.pending, exc)

    def _merge(self, batch: dict[tuple[str, date], list[float]]) -> None:
        for key, amounts in batch.items():
            row = self._pending.setdefault(key, [0, 0, 0, 0.0])
            for i, amount in enumerate(amounts):
                row[i] += amount

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            time.sleep(self.flush_interval)  # let the batch gather
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # the writer must outlive any failure
                log.warning("usage batch kept for a retry: %s", exc)
                self._wake.set()
                time.sleep(RETRY_S)
