"""Cost alerts: per-tenant thresholds of the monthly budget, recorded once per crossing, in
the store (SQLite and PostgreSQL), the audit log, /metrics and the console."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from api_support import ADMIN, make_api
from rag_support import FIXED_NOW
from test_console import make_app, sign_in

from m11_tenant.errors import BudgetExceededError, ConfigValidationError
from m11_tenant.rag import InMemoryLedger
from m11_tenant.rag.alerts import CostAlerts, month_of, reached_thresholds
from m11_tenant.schema import validate_config
from m11_tenant.store import CostAlert

JAN = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


# ---- the pure decision ----------------------------------------------------------------------
@pytest.mark.parametrize(("spent", "reached"), [
    (0.0, []), (2.49, []), (2.5, [50]), (3.99, [50]), (4.0, [50, 80]), (5.0, [50, 80, 100]),
    (7.0, [50, 80, 100]),
])
def test_reached_thresholds_on_both_sides_of_each(spent, reached):
    assert reached_thresholds(spent, 5.0, [50, 80, 100]) == reached


def test_no_budget_reaches_nothing_and_no_thresholds_mean_no_alerts():
    assert reached_thresholds(10.0, 0.0, [50]) == []
    assert reached_thresholds(10.0, 5.0, []) == []


def test_thresholds_are_validated_percentages_in_ascending_order():
    assert validate_config({}).cost_alert_thresholds == [50, 80, 100]
    assert validate_config({"cost_alert_thresholds": []}).cost_alert_thresholds == []
    for bad in ([0], [101], [80, 50], [50, 50], [10, 20, 30, 40, 50, 60], ["50"], [50.0]):
        with pytest.raises(ConfigValidationError) as err:
            validate_config({"cost_alert_thresholds": bad})
        assert err.value.errors[0].field.startswith("cost_alert_thresholds")


# ---- once per crossing --------------------------------------------------------------------
def test_each_threshold_is_recorded_once_a_month():
    ledger = InMemoryLedger()
    alerts = CostAlerts(ledger)
    settle = lambda spent, now=JAN: [a.threshold_pct for a in alerts.settle(  # noqa: E731
        "t-alerts", spent_month_usd=spent, budget_usd=5.0, thresholds_pct=[50, 80, 100],
        now=now)]
    assert settle(1.0) == []
    assert settle(2.6) == [50]
    assert settle(2.7) == []          # still past 50 %: nothing new
    assert settle(4.5) == [80]
    assert settle(0.3, datetime(2026, 2, 1, tzinfo=UTC)) == []  # a new month starts over
    assert settle(2.5, datetime(2026, 2, 2, tzinfo=UTC)) == [50]
    assert [(a.month, a.threshold_pct) for a in ledger.cost_alerts("t-alerts")] == [
        ("2026-02", 50), ("2026-01", 80), ("2026-01", 50)]


def test_a_second_process_does_not_record_the_crossing_again():
    ledger = InMemoryLedger()
    one, two = CostAlerts(ledger), CostAlerts(ledger)
    kwargs = {"spent_month_usd": 4.2, "budget_usd": 5.0, "thresholds_pct": [80], "now": JAN}
    assert len(one.settle("t-two", **kwargs)) == 1
    assert two.settle("t-two", **kwargs) == []
    assert len(ledger.cost_alerts("t-two")) == 1


def test_the_store_records_and_audits_each_crossing_once(store, tenant_id):
    alert = CostAlert(tenant_id, "2026-01", 80, 4.1, 5.0, "2026-01-15T09:00:00+00:00")
    assert store.record_cost_alert(alert) is True
    assert store.record_cost_alert(alert) is False
    assert store.record_cost_alert(CostAlert(tenant_id, "2026-01", 50, 2.6, 5.0,
                                             "2026-01-14T09:00:00+00:00")) is True
    assert [(a.threshold_pct, a.spent_usd) for a in store.cost_alerts(tenant_id)] == [
        (80, 4.1), (50, 2.6)]
    assert store.cost_alerts(tenant_id, month="2026-02") == []
    audit = [e for e in store.audit(tenant_id) if e.action == "cost_alert"]
    assert [e.diff for e in audit] == [{"cost_alert_pct": [None, 50]},
                                       {"cost_alert_pct": [None, 80]}]
    assert audit[1].reason == "spent $4.10 of the $5.00 monthly budget: 80% reached in 2026-01"
    assert (audit[0].actor, audit[0].role) == ("platform", "system")


# ---- where a learner and an operator see them ----------------------------------------------
def spend(repo, tenant_id: str, usd: float) -> None:
    repo.store.record_usage(tenant_id, FIXED_NOW.date(), queries=0, prompt_tokens=0,
                            completion_tokens=0, cost_usd=usd)


def test_a_query_that_crosses_a_threshold_shows_in_metrics_audit_and_console(repo, tenant_id):
    api = make_api(repo)
    api.write(tenant_id, {"plan": "free", "cost_alert_thresholds": [50, 90]})
    spend(repo, tenant_id, 2.4999)  # just under half of the free plan's $5
    query = {"tenant_id": tenant_id, "query": "How do I roll back a config?"}
    assert api.client.post("/query", headers=ADMIN, json=query).status_code == 200
    assert [a.threshold_pct for a in repo.store.cost_alerts(tenant_id)] == [50]
    assert api.client.post("/query", headers=ADMIN, json=query).status_code == 200
    assert len(repo.store.cost_alerts(tenant_id)) == 1  # recorded once, not per query

    metrics = api.client.get("/metrics", headers=ADMIN).text
    assert f'm11_cost_alerts_total{{tenant="{tenant_id}",threshold_pct="50"}} 1.0' in metrics
    assert [e.action for e in repo.get_audit_log(tenant_id)].count("cost_alert") == 1

    page = sign_in(make_app(repo)).get(f"/console/t/{tenant_id}").text
    banner = re.search(r'<p class="banner warn" role="status" id="cost-alerts">(.*?)</p>',
                       page, re.S)[1]
    assert f"Cost alerts, {month_of(FIXED_NOW)}:" in banner
    assert "50% of the $5.00 monthly budget reached" in banner


def test_the_query_that_reaches_the_budget_alerts_and_the_next_is_refused(repo, tenant_id):
    from api_support import make_pipeline

    repo.update_config(tenant_id, {"plan": "free"})
    spend(repo, tenant_id, 4.9999)
    pipeline = make_pipeline(repo)
    pipeline.query(tenant_id, "What is a tenant?")
    assert [a.threshold_pct for a in repo.store.cost_alerts(tenant_id)] == [100, 80, 50]
    with pytest.raises(BudgetExceededError):
        pipeline.query(tenant_id, "What is a tenant?")


def test_month_of_is_the_utc_calendar_month():
    assert month_of(JAN) == "2026-01"


def test_a_tenant_sets_its_thresholds_in_the_console(repo, tenant_id):
    from test_console import field_error, form_of

    repo.update_config(tenant_id, {"plan": "free"})
    client = sign_in(make_app(repo))
    page = client.get(f"/console/t/{tenant_id}").text
    assert 'name="cost_alert_thresholds" value="50, 80, 100"' in page
    saved = client.post(f"/console/t/{tenant_id}", data={
        **form_of(client, tenant_id), "cost_alert_thresholds": "25, 75", "reason": "earlier"})
    assert saved.status_code == 200, saved.text
    assert repo.get_config(tenant_id).cost_alert_thresholds == [25, 75]
    refused = client.post(f"/console/t/{tenant_id}", data={
        **form_of(client, tenant_id), "cost_alert_thresholds": "75, 25", "reason": "oops"})
    assert refused.status_code == 422
    assert "ascending" in field_error(refused.text, "f-cost-alert-thresholds")
    assert repo.get_config(tenant_id).cost_alert_thresholds == [25, 75]
