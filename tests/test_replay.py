"""Replay (POST /config/{id}/preview with "replay": N) and explain (GET /config/{id}/explain).

The summary's arithmetic is checked on a hand-computed example (pure functions); the API
tests run on every backend the run can reach.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from api_support import ADMIN, make_api

from m11_tenant.rag.replay import ReplayedQuestion, summarize, traffic_per_day
from m11_tenant.schema import load_catalog


def row(before: list[str], after: list[str], cost_before: float, cost_after: float,
        overlap: float) -> ReplayedQuestion:
    return ReplayedQuestion("q", before, after, [i for i in after if i not in before],
                            [i for i in before if i not in after], overlap, False, 100, 100,
                            cost_before, cost_after)


HAND = [row(["a", "b", "c"], ["a", "b", "d"], 0.001, 0.002, 0.5),
        row(["a", "b"], ["b", "a"], 0.002, 0.002, 1.0),   # reordered only: not a change
        row(["c"], ["e"], 0.003, 0.005, 0.0)]


def test_traffic_rate_is_logged_questions_per_day_since_the_oldest():
    now = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    assert traffic_per_day(40, "2026-01-05T09:00:00+00:00", now) == 4.0
    assert traffic_per_day(6, "2026-01-15T08:00:00+00:00", now) == 6.0  # at least a day
    assert traffic_per_day(0, None, now) == 0.0


def test_cost_projection_on_a_hand_computed_example():
    # 3 questions: before 0.001+0.002+0.003 = 0.006, after 0.002+0.002+0.005 = 0.009, so
    # a delta of 0.003, 0.001 per question. 4 questions a day -> 120 a month (the free
    # plan's quota of 100 a day does not bind) -> 120 * 0.001 = 0.12 USD a month more;
    # after: 120 * 0.003 = 0.36 USD, 7.2 % of the free plan's 5 USD budget.
    summary = summarize(HAND, per_day=4.0, plan=load_catalog().plan("free"))
    assert summary == {
        "replayed": 3, "requested": 3, "stopped_early": False,
        "sources_changed_share": 0.6667, "mean_source_overlap": 0.5,
        "answers_changed_share": 0.0,
        "cost_before_usd": 0.006, "cost_after_usd": 0.009, "cost_delta_usd": 0.003,
        "logged_queries_per_day": 4.0, "projected_monthly_queries": 120.0,
        "projected_monthly_cost_before_usd": 0.24, "projected_monthly_cost_after_usd": 0.36,
        "projected_monthly_cost_delta_usd": 0.12, "monthly_budget_usd": 5.0,
        "projected_budget_share_after": 0.072,
    }


def test_projection_counts_no_more_queries_than_the_plan_allows():
    # 500 a day logged, but the free plan answers 100 a day: 3,000 a month, not 15,000.
    summary = summarize(HAND, per_day=500.0, plan=load_catalog().plan("free"))
    assert summary["projected_monthly_queries"] == 3000.0
    assert summary["projected_monthly_cost_delta_usd"] == 3.0
    assert summary["projected_budget_share_after"] == 1.8


# ---- over HTTP ---------------------------------------------------------------------------
QUESTIONS = ["What does the ingestion worker log code E1234 mean?",
             "How can I stop one customer from seeing another customer's records?",
             "What happens when everyone misses the cache at once?",
             "Why did my bill go up after switching models?"]


@pytest.fixture
def api(repo):
    return make_api(repo)


@pytest.fixture
def logged(api, tenant_id):
    """A tenant with a query log of the four questions above (newest last asked)."""
    api.write(tenant_id, {"query_log_size": 50, "top_k": 3, "alpha": 0.5})
    for q in QUESTIONS:
        response = api.client.post("/query", headers=ADMIN,
                                   json={"tenant_id": tenant_id, "query": q})
        assert response.status_code == 200, response.text
    return tenant_id


def preview(api, tenant_id, headers=ADMIN, **body):
    return api.client.post(f"/config/{tenant_id}/preview", headers=headers,
                           json={"config": {"top_k": 5, "model": "gpt-4-turbo",
                                            "plan": "starter"}, **body})


def usage(api, tenant_id):
    return api.repo.store.usage_totals(tenant_id, api.repo.store.clock().date())


def test_replay_reports_every_question_and_the_summary(api, logged):
    response = preview(api, logged, replay=3)
    assert response.status_code == 200, response.text
    report = response.json()["replay"]
    assert report["generator"] == "offline"
    assert [q["question"] for q in report["questions"]] == QUESTIONS[:0:-1]  # newest first
    for q in report["questions"]:
        assert {"sources_before", "sources_after", "answer_changed", "cost_before_usd",
                "cost_after_usd"} <= set(q)
        assert len(q["sources_before"]) == 3 and len(q["sources_after"]) == 5
        assert set(q["sources_before"]) <= set(q["sources_after"])  # a wider top_k
        assert q["cost_after_usd"] > q["cost_before_usd"]  # gpt-4-turbo costs more
    summary = report["summary"]
    assert {"replayed", "sources_changed_share", "mean_source_overlap", "cost_delta_usd",
            "projected_monthly_cost_delta_usd"} <= set(summary)
    assert summary["replayed"] == 3 and summary["sources_changed_share"] == 1.0
    assert summary["mean_source_overlap"] == 0.6
    delta = sum(q["cost_after_usd"] - q["cost_before_usd"] for q in report["questions"])
    assert summary["cost_delta_usd"] == pytest.approx(delta, abs=1e-8)
    # 4 logged today (the store's clock does not move): 4 a day, 120 a month.
    assert summary["projected_monthly_queries"] == 120.0
    assert summary["projected_monthly_cost_delta_usd"] == pytest.approx(delta / 3 * 120,
                                                                        abs=1e-5)


def test_replay_changes_nothing_stored_but_its_audit_line(api, logged):
    before = api.snapshot(logged)
    log_before = api.repo.store.query_log(logged, limit=100)
    usage_before = usage(api, logged)
    assert preview(api, logged, replay=4, reason="try a wider top_k").status_code == 200
    record, history, audit = api.snapshot(logged)
    assert (record, history) == before[:2]
    assert audit[1:] == before[2]
    assert (audit[0].action, audit[0].reason, audit[0].diff) == (
        "replay", "try a wider top_k", {"replayed": [None, 4]})
    assert api.repo.store.query_log(logged, limit=100) == log_before
    assert usage(api, logged) == usage_before


def test_another_tenants_key_cannot_replay(api, logged):
    api.write(logged + "-x", {"top_k": 3})
    intruder = api.key_for(logged + "-x")
    audit_before = api.repo.store.audit(logged)
    response = preview(api, logged, intruder, replay=2)
    assert response.status_code == 403
    assert "E1234" not in response.text
    # Counted under the intruder's own tenant, not written into the target's log.
    assert api.repo.store.audit(logged) == audit_before
    assert [e.action for e in api.repo.store.audit(logged + "-x")][:1] == ["denied"]


@pytest.mark.parametrize("bad", [0, 201, -1, True, "3", 2.0])
def test_replay_count_is_bounded(api, logged, bad):
    response = preview(api, logged, replay=bad)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "replay"


def test_replay_with_nothing_logged_says_what_to_do(api, tenant_id):
    response = preview(api, tenant_id, replay=5)
    assert response.status_code == 422
    assert "query_log_size" in response.json()["error"]["fields"][0]["message"]


def test_a_time_budget_cuts_a_replay_short(repo, tenant_id):
    api = make_api(repo, m11_replay_time_budget=1e-9)
    api.write(tenant_id, {"query_log_size": 10})
    for q in QUESTIONS:
        api.client.post("/query", headers=ADMIN, json={"tenant_id": tenant_id, "query": q})
    summary = preview(api, tenant_id, replay=4).json()["replay"]["summary"]
    assert (summary["replayed"], summary["requested"], summary["stopped_early"]) == (1, 4, True)


def test_replays_count_against_the_preview_rate_limit(repo, tenant_id):
    api = make_api(repo, m11_rate_previews="2/hour")
    key = api.key_for(tenant_id)
    # The plan is the admin's to set: a tenant's preview may only keep it (issue 12).
    api.write(tenant_id, {"query_log_size": 10, "plan": "starter"})
    api.client.post("/query", headers=key, json={"tenant_id": tenant_id, "query": QUESTIONS[0]})
    assert [preview(api, tenant_id, key, replay=1).status_code for _ in range(3)] == [
        200, 200, 429]


# ---- explain -----------------------------------------------------------------------------
def test_explain_says_where_each_value_comes_from(api, tenant_id):
    key = api.key_for(tenant_id)
    api.write(tenant_id, {"plan": "pro"}, reason="signed the pro contract")
    api.write(tenant_id, {"temperature": 0.2}, headers=key, reason="calmer answers")
    response = api.client.get(f"/config/{tenant_id}/explain", headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    fields = body["fields"]
    assert fields["temperature"]["source"] == "set"
    assert fields["temperature"]["set_by"].startswith("key:")
    assert (fields["temperature"]["version"], fields["temperature"]["reason"]) == (
        2, "calmer answers")
    assert (fields["plan"]["set_by"], fields["plan"]["version"], fields["plan"]["reason"]) == (
        "admin", 1, "signed the pro contract")
    assert fields["plan"]["who_may_change"] == "platform admin"
    assert fields["top_k"] == {"value": 5, "default": 5, "source": "default",
                               "who_may_change": "tenant or platform admin",
                               "plan_limit": None, "at_plan_cap": False}
    assert fields["max_tokens"]["plan_limit"] == "at most 4000 on the pro plan"
    assert fields["branding.logo_url"]["source"] == "default"
    assert body["forbidden_for_tenant"] == ["plan"]
    assert body["version"] == 2 and body["plan"]["name"] == "pro"


def test_explain_of_a_rollback_names_the_rollback(api, tenant_id):
    api.write(tenant_id, {"top_k": 8})
    api.write(tenant_id, {"top_k": 9})
    api.client.post(f"/config/{tenant_id}/rollback?version=1&reason=too+many", headers=ADMIN)
    top_k = api.client.get(f"/config/{tenant_id}/explain", headers=ADMIN).json()["fields"]["top_k"]
    assert (top_k["value"], top_k["action"], top_k["version"], top_k["reason"]) == (
        8, "rollback", 3, "too many")


def test_explain_of_a_tenant_on_the_defaults(api, tenant_id):
    body = api.client.get(f"/config/{tenant_id}/explain", headers=ADMIN).json()
    assert body["version"] == 0
    assert {f["source"] for f in body["fields"].values()} == {"default"}


def test_another_tenants_key_cannot_explain(api, tenant_id):
    api.write(tenant_id, {"temperature": 0.3}, reason="secret reason")
    response = api.client.get(f"/config/{tenant_id}/explain",
                              headers=api.key_for(tenant_id + "-x"))
    assert response.status_code == 403 and "secret" not in response.text
