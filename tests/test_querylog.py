"""The opt-in query log: redaction, retention by count and age, deletion, tenant isolation.

Store tests run on every backend (SQLite always, PostgreSQL under .ci/run); the API tests
drive ``/query`` and the query-log endpoints over HTTP.
"""

from __future__ import annotations

import pytest
from api_support import ADMIN, make_api
from pydantic import ValidationError

from m11_tenant.app import ApiSettings
from m11_tenant.rag.querylog import redact
from m11_tenant.store import Change, LoggedQuery


def entry(tenant_id: str, question: str) -> LoggedQuery:
    return LoggedQuery(tenant_id, question, ("p1", "p2"), "gpt-3.5-turbo", 120, 30, 0.000105)


# ---- redaction (pure) ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane.doe+rag@example.co.uk please", "mail me at [email] please"),
    ("card 4111 1111 1111 1111 expired", "card [number] expired"),
    ("call +1 415-555-0100 now", "call [number] now"),
    ("order 1234567 and account 98.76.54.32", "order [number] and account [number]"),
    ("ticket ٣٤٥٦٧٨٩ (Arabic-Indic digits)", "ticket [number] (Arabic-Indic digits)"),
    ("error E1234 since 2024, top_k 20", "error E1234 since 2024, top_k 20"),
    ("five digits 12345 stay", "five digits 12345 stay"),
])
def test_redaction_replaces_emails_and_long_digit_runs(text, expected):
    assert redact(text) == expected


# ---- the store (both backends) -----------------------------------------------------------
def test_the_log_never_holds_more_than_its_size(store, tenant_id):
    for i in range(7):
        store.append_query_log(entry(tenant_id, f"question {i}"), keep=3)
        assert len(store.query_log(tenant_id, limit=1000)) == min(i + 1, 3)
    assert [e.question for e in store.query_log(tenant_id, limit=1000)] == [
        "question 6", "question 5", "question 4"]


def test_entries_keep_sources_model_tokens_and_cost(store, tenant_id, clock):
    store.append_query_log(entry(tenant_id, "what is alpha?"), keep=5)
    [logged] = store.query_log(tenant_id, limit=5)
    assert (logged.question, logged.source_ids, logged.model, logged.prompt_tokens,
            logged.completion_tokens, logged.cost_usd) == (
        "what is alpha?", ("p1", "p2"), "gpt-3.5-turbo", 120, 30, 0.000105)
    assert logged.at == clock().isoformat(timespec="seconds")


def test_old_entries_age_out(store, tenant_id, clock):
    store.append_query_log(entry(tenant_id, "old"), keep=10, max_age_days=30)
    clock.advance(days=20)
    store.append_query_log(entry(tenant_id, "newer"), keep=10, max_age_days=30)
    clock.advance(days=11)  # "old" is now 31 days old: not read, and dropped on next append
    assert [e.question for e in store.query_log(tenant_id, limit=10)] == ["newer"]
    store.append_query_log(entry(tenant_id, "newest"), keep=10, max_age_days=30)
    assert [e.question for e in store.query_log(tenant_id, limit=10, max_age_days=365)] == [
        "newest", "newer"]


def test_lowering_query_log_size_trims_at_once_and_zero_empties_it(repo, tenant_id):
    repo.update_config(tenant_id, {"query_log_size": 5})
    for i in range(5):
        repo.store.append_query_log(entry(tenant_id, f"q{i}"), keep=5)
    repo.update_config(tenant_id, {"query_log_size": 2})
    assert [e.question for e in repo.store.query_log(tenant_id, limit=10)] == ["q4", "q3"]
    repo.update_config(tenant_id, {"query_log_size": 0})
    assert repo.store.query_log(tenant_id, limit=10) == []


def test_reverting_to_the_defaults_drops_the_log(repo, tenant_id):
    repo.update_config(tenant_id, {"query_log_size": 5})
    repo.store.append_query_log(entry(tenant_id, "q"), keep=5)
    repo.delete_config(tenant_id)
    assert repo.store.query_log(tenant_id, limit=10) == []


def test_clearing_deletes_only_that_tenant_and_is_audited(store, tenant_id):
    other = tenant_id + "-b"
    store.append_query_log(entry(tenant_id, "mine"), keep=5)
    store.append_query_log(entry(tenant_id, "mine too"), keep=5)
    store.append_query_log(entry(other, "theirs"), keep=5)
    assert store.clear_query_log(tenant_id, Change("alice", "tenant", "query_log_deleted")) == 2
    assert store.query_log(tenant_id, limit=10) == []
    assert [e.question for e in store.query_log(other, limit=10)] == ["theirs"]
    [line] = store.audit(tenant_id)
    assert (line.actor, line.action, line.diff) == ("alice", "query_log_deleted",
                                                    {"query_log": [2, 0]})


# ---- over HTTP ---------------------------------------------------------------------------
@pytest.fixture
def api(repo):
    return make_api(repo)


def ask(api, tenant_id, question, headers=ADMIN):
    response = api.client.post("/query", headers=headers,
                               json={"tenant_id": tenant_id, "query": question})
    assert response.status_code == 200, response.text
    return response.json()


def test_query_logs_nothing_while_the_log_is_off(api, tenant_id):
    ask(api, tenant_id, "What is hybrid search?")
    assert api.repo.store.query_log(tenant_id, limit=10) == []
    body = api.client.get(f"/config/{tenant_id}/query-log", headers=ADMIN).json()
    assert body == {"tenant_id": tenant_id, "query_log_size": 0, "entries": []}


def test_query_logs_redacted_questions_with_their_sources(api, tenant_id):
    api.write(tenant_id, {"query_log_size": 2})
    answers = [ask(api, tenant_id, q) for q in (
        "What does log code E1234 mean? I am bob@example.com",
        "How do I stop one customer seeing another's records? Order 55512345",
        "What happens when everyone misses the cache at once?")]
    body = api.client.get(f"/config/{tenant_id}/query-log", headers=ADMIN).json()
    assert [e["question"] for e in body["entries"]] == [
        "What happens when everyone misses the cache at once?",
        "How do I stop one customer seeing another's records? Order [number]"]
    assert body["entries"][0]["source_ids"] == [s["id"] for s in answers[2]["sources"]]
    assert body["entries"][0]["cost_usd"] == answers[2]["cost_usd"]
    assert body["entries"][0]["model"] == answers[2]["model_used"]


def test_a_tenant_deletes_its_own_log(api, tenant_id):
    key = api.key_for(tenant_id)
    api.write(tenant_id, {"query_log_size": 10})
    ask(api, tenant_id, "What is hybrid search?", key)
    response = api.client.delete(f"/config/{tenant_id}/query-log", headers=key)
    assert response.json() == {"tenant_id": tenant_id, "deleted": 1}
    assert api.client.get(f"/config/{tenant_id}/query-log", headers=key).json()["entries"] == []


def test_another_tenants_key_can_neither_read_nor_delete_the_log(api, tenant_id):
    api.write(tenant_id, {"query_log_size": 10})
    ask(api, tenant_id, "What is hybrid search?")
    intruder = api.key_for(tenant_id + "-x")
    for method in ("get", "delete"):
        response = api.client.request(method, f"/config/{tenant_id}/query-log",
                                      headers=intruder)
        assert response.status_code == 403, response.text
        assert "hybrid" not in response.text
    assert len(api.repo.store.query_log(tenant_id, limit=10)) == 1


# ---- settings ----------------------------------------------------------------------------
def test_retention_and_replay_budget_come_from_a_dotenv_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("QUERY_LOG_MAX_AGE_DAYS=7\nM11_REPLAY_TIME_BUDGET=5\n")
    monkeypatch.chdir(tmp_path)
    settings = ApiSettings()
    assert (settings.query_log_max_age_days, settings.m11_replay_time_budget) == (7, 5.0)


@pytest.mark.parametrize("days", [0, 366])
def test_retention_days_are_bounded(days):
    with pytest.raises(ValidationError, match="query_log_max_age_days"):
        ApiSettings(query_log_max_age_days=days, _env_file=None)
