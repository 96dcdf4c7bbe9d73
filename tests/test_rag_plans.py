"""Plan limits and prices: pure functions, no fixtures."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from rag_support import catalog, make_config, stale_config

from m11_tenant.errors import BudgetExceededError, QueryRefusedError, QuotaExceededError
from m11_tenant.rag.ledger import UsageTotals
from m11_tenant.rag.plans import (
    check_static_limits,
    price,
    seconds_until_next_month,
    seconds_until_tomorrow,
    usage_refusal,
)

NOW = datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC)
PLAN = SimpleNamespace(name="free", daily_queries=3, monthly_budget_usd=1.0)


def test_reset_times():
    assert seconds_until_tomorrow(NOW) == 3600
    assert seconds_until_next_month(NOW) == 3600
    assert seconds_until_next_month(datetime(2026, 2, 28, 0, 0, tzinfo=UTC)) == 86400


def test_quota_refusal_says_when_it_resets():
    refusal = usage_refusal("acme", PLAN, UsageTotals(queries_today=3, cost_month_usd=0.0), NOW)
    assert isinstance(refusal, QuotaExceededError)
    assert "used its 3 queries" in str(refusal) and refusal.retry_after == 3600


def test_quota_comes_first_when_both_are_used_up():
    both = UsageTotals(queries_today=3, cost_month_usd=1.0)
    assert isinstance(usage_refusal("acme", PLAN, both, NOW), QuotaExceededError)


def test_budget_refusal_says_when_it_resets():
    refusal = usage_refusal("acme", PLAN, UsageTotals(queries_today=0, cost_month_usd=1.0), NOW)
    assert isinstance(refusal, BudgetExceededError)
    assert "spent $1.00 of its $1.00" in str(refusal) and refusal.retry_after == 3600


@pytest.mark.parametrize(("overrides", "message"), [
    ({"model": "gpt-4"}, "model 'gpt-4' is not allowed on the 'free' plan"),
    ({"fallback_model": "claude-3-opus"}, "fallback_model 'claude-3-opus' is not allowed"),
    ({"max_tokens": 1001}, "above the 'free' plan's cap of 1000"),
    ({"model": "gpt-5-imaginary"}, "not in the model catalog"),
    ({"plan": "platinum"}, "plan 'platinum' does not exist"),
])
def test_static_limits_refuse_with_the_field_to_change(overrides, message):
    with pytest.raises(QueryRefusedError, match=message):
        check_static_limits(stale_config(**overrides), catalog())


def test_static_limits_accept_the_plan_cap_exactly():
    assert check_static_limits(make_config(max_tokens=1000), catalog()).name == "free"


def test_price_uses_the_catalog_per_1k_rates():
    gpt4 = catalog().model("gpt-4")
    assert price(gpt4, 1000, 1000) == pytest.approx(0.03 + 0.06)
    assert price(catalog().model("gpt-3.5-turbo"), 2000, 0) == pytest.approx(0.001)
