"""The UsageLedger contract, run against the in-memory twin and an SQLite implementation."""

from datetime import date

import pytest
from rag_support import SqliteLedger

from m11_tenant.rag.ledger import InMemoryLedger, UsageLedger


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request, tmp_path):
    if request.param == "memory":
        return InMemoryLedger()
    return SqliteLedger(tmp_path / "usage.db")


def record(ledger, tenant, day, cost, queries=1):
    ledger.record_usage(tenant, day, queries=queries, prompt_tokens=100, completion_tokens=10,
                        cost_usd=cost)


def test_implements_the_protocol(ledger):
    assert isinstance(ledger, UsageLedger)


def test_empty_ledger_totals_are_zero(ledger):
    totals = ledger.usage_totals("acme", date(2026, 3, 14))
    assert (totals.queries_today, totals.cost_month_usd) == (0, 0.0)


def test_queries_count_per_day_and_cost_per_calendar_month(ledger):
    record(ledger, "acme", date(2026, 2, 28), 5.0)  # previous month: not counted
    record(ledger, "acme", date(2026, 3, 1), 0.25)
    record(ledger, "acme", date(2026, 3, 14), 0.5)
    record(ledger, "acme", date(2026, 3, 14), 0.125, queries=2)
    record(ledger, "other", date(2026, 3, 14), 9.0)  # another tenant: not counted
    totals = ledger.usage_totals("acme", date(2026, 3, 14))
    assert totals.queries_today == 3
    assert totals.cost_month_usd == pytest.approx(0.875)
    first = ledger.usage_totals("acme", date(2026, 3, 1))
    assert (first.queries_today, first.cost_month_usd) == (1, pytest.approx(0.25))


def test_a_cost_alert_is_recorded_once(ledger):
    from m11_tenant.store import CostAlert

    alert = CostAlert("acme", "2026-03", 80, 4.2, 5.0, "2026-03-14T09:00:00+00:00")
    assert ledger.record_cost_alert(alert) is True
    assert ledger.record_cost_alert(alert) is False
    assert ledger.record_cost_alert(CostAlert("acme", "2026-04", 80, 4.1, 5.0,
                                              "2026-04-02T09:00:00+00:00")) is True
