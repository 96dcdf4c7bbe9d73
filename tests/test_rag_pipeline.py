"""The pipeline end to end on the fixture corpus, offline: configs shape results; every
refusal path; no network at all (live providers are tested in test_rag_providers.py against
local stand-ins)."""

import asyncio
import socket
from datetime import timedelta

import pytest
from rag_support import (
    FIXED_NOW,
    DictConfigSource,
    catalog,
    fixture_index,
    make_config,
    no_providers,
    stale_config,
)

from m11_tenant.errors import (
    BudgetExceededError,
    ConfigValidationError,
    ModelUnavailableError,
    QueryRefusedError,
    QuotaExceededError,
)
from m11_tenant.rag.ledger import InMemoryLedger
from m11_tenant.rag.pipeline import RagPipeline
from m11_tenant.rag.tokens import count_tokens

Q = "How can I stop one customer from seeing another customer's records?"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the way an offline box does."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def pipeline(configs=None, ledger=None, **kwargs):
    kwargs.setdefault("settings", no_providers())
    return RagPipeline(DictConfigSource(configs or {}), ledger or InMemoryLedger(),
                       index=fixture_index(), clock=lambda: FIXED_NOW, catalog=catalog(),
                       **kwargs)


FOUR_TENANTS = {
    "acme": make_config(),
    "globex": make_config(model="gpt-4-turbo", plan="starter", top_k=8, alpha=0.0,
                          max_tokens=40, temperature=0.2),
    "initech": make_config(model="claude-3-sonnet", plan="pro", top_k=6, alpha=1.0,
                           enable_reranking=True, rerank_top_n=2),
    "umbrella": make_config(model="gpt-4", plan="enterprise", top_k=3, alpha=0.25,
                            prompt_template="You are {company}'s assistant.\n{context}\nQ: {query}",
                            prompt_variables={"company": "Umbrella"}),
}


# --- configs shape results ----------------------------------------------------------------
def test_four_tenants_get_four_differently_configured_results():
    p = pipeline(FOUR_TENANTS)
    results = {t: p.query(t, Q) for t in FOUR_TENANTS}
    assert len({r.model_used for r in results.values()}) == 4
    assert [len(r.sources) for r in results.values()] == [5, 8, 2, 3]
    assert len({tuple(s.id for s in r.sources) for r in results.values()}) == 4
    assert len({r.prompt for r in results.values()}) == 4
    assert len({r.cost_usd for r in results.values()}) == 4
    for tid, r in results.items():
        cfg = FOUR_TENANTS[tid]
        assert r.tenant_id == tid and r.model_requested == cfg.model == r.model_used
        assert r.config_applied["top_k"] == cfg.top_k and r.config_applied["alpha"] == cfg.alpha
        assert r.generator == "offline" and "no language model was called" in r.notice
        assert r.usage.completion_tokens <= cfg.max_tokens and r.usage.estimated
    assert results["initech"].config_applied["rerank_top_n"] == 2
    assert "Umbrella's assistant" in results["umbrella"].prompt


def test_a_template_with_context_gets_the_retrieved_passages_numbered():
    p = pipeline()
    r = p.run(make_config(top_k=3), Q)
    for n, source in enumerate(r.sources, 1):
        passage = fixture_index().corpus.by_id(source.id)
        assert f"[{n}] {passage.title}\n{passage.text}" in r.prompt
    assert f"Question: {Q}" in r.prompt


def test_the_offline_answer_cites_the_sources_and_honours_max_tokens():
    p = pipeline()
    long = p.run(make_config(max_tokens=1000), Q)
    assert "[1]" in long.answer
    assert long.usage.completion_tokens == count_tokens(long.answer, "gpt-3.5-turbo")
    assert long.usage.prompt_tokens == count_tokens(long.prompt, "gpt-3.5-turbo")
    for cap in (1, 7, 30):
        short = p.run(make_config(max_tokens=cap), Q)
        assert 0 < short.usage.completion_tokens <= cap
        assert long.answer.startswith(short.answer.rstrip(" .")[:20])


def test_cost_is_priced_from_the_catalog():
    r = pipeline().run(make_config(model="gpt-3.5-turbo"), Q)
    m = catalog().model("gpt-3.5-turbo")
    expected = (r.usage.prompt_tokens * m.input_usd_per_1k
                + r.usage.completion_tokens * m.output_usd_per_1k) / 1000
    assert r.cost_usd == pytest.approx(expected, abs=1e-8)


def test_results_are_deterministic_and_timings_stay_out_of_the_dump():
    p = pipeline({"acme": make_config()})
    a, b = p.query("acme", Q), p.query("acme", Q)
    assert a.model_dump() == b.model_dump()
    assert "timings_ms" not in a.model_dump()
    assert set(a.timings_ms) == {"config_load", "embed", "retrieve", "rerank", "generate",
                                 "ledger"}


def test_query_records_usage_and_run_records_nothing():
    ledger = InMemoryLedger()
    p = pipeline({"acme": make_config()}, ledger)
    previewed = p.run(make_config(), Q, tenant_id="acme")
    assert not previewed.recorded and ledger.rows == {}
    r = p.query("acme", Q)
    assert r.recorded
    totals = ledger.usage_totals("acme", FIXED_NOW.date())
    assert (totals.queries_today, totals.cost_month_usd) == (1, pytest.approx(r.cost_usd))
    row = ledger.rows[("acme", FIXED_NOW.date())]
    assert row["prompt_tokens"] == r.usage.prompt_tokens


def test_an_offline_query_or_preview_takes_one_worker_thread(monkeypatch):
    """Offline, nothing is awaited between the stages: one thread hop, not one per stage
    (a hop cost more than a repeated question's retrieval and generation together)."""
    hops = []
    to_thread = asyncio.to_thread

    async def counting(fn, *args, **kwargs):
        hops.append(getattr(fn, "__name__", fn))
        return await to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    p = pipeline({"acme": make_config()})
    assert p.query("acme", Q).recorded
    assert p.run(make_config(), Q).answer
    assert hops == ["_query_offline", "_execute_offline"]


def test_an_offline_query_that_fails_after_the_gate_gives_its_slot_back(monkeypatch):
    ledger = InMemoryLedger()
    p = pipeline({"acme": make_config()}, ledger)

    def broken(*args, **kwargs):
        raise RuntimeError("index lost")

    monkeypatch.setattr(p.index, "search", broken)
    with pytest.raises(RuntimeError, match="index lost"):
        p.query("acme", Q)
    assert ledger.usage_totals("acme", FIXED_NOW.date()).queries_today == 0


def test_an_empty_question_is_refused():
    with pytest.raises(ConfigValidationError, match="empty"):
        pipeline().run(make_config(), "   ")


# --- refusals before anything runs ------------------------------------------------------
def test_daily_quota_refusal():
    ledger = InMemoryLedger()
    ledger.record_usage("acme", FIXED_NOW.date(), queries=100, prompt_tokens=0,
                        completion_tokens=0, cost_usd=0.0)  # free plan: 100 a day
    with pytest.raises(QuotaExceededError, match="used its 100 queries") as info:
        pipeline({"acme": make_config()}, ledger).query("acme", Q)
    assert info.value.retry_after == 9 * 3600  # 15:00 → midnight UTC
    assert ledger.usage_totals("acme", FIXED_NOW.date()).queries_today == 100  # not counted


def test_quota_is_per_day():
    ledger = InMemoryLedger()
    ledger.record_usage("acme", FIXED_NOW.date() - timedelta(days=1), queries=100,
                        prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
    assert pipeline({"acme": make_config()}, ledger).query("acme", Q).recorded


def test_monthly_budget_refusal():
    ledger = InMemoryLedger()
    ledger.record_usage("acme", FIXED_NOW.date().replace(day=1), queries=1, prompt_tokens=0,
                        completion_tokens=0, cost_usd=5.0)  # free plan: $5 a month
    with pytest.raises(BudgetExceededError, match="monthly budget") as info:
        pipeline({"acme": make_config()}, ledger).query("acme", Q)
    assert info.value.retry_after > 0


def test_a_model_the_plan_does_not_allow_is_refused_before_retrieval():
    p = pipeline({"acme": stale_config(model="gpt-4", plan="free")})
    with pytest.raises(QueryRefusedError, match="not allowed on the 'free' plan"):
        p.query("acme", Q)


def test_max_tokens_above_the_plan_cap_is_refused():
    with pytest.raises(QueryRefusedError, match="cap of 1000"):
        pipeline().run(stale_config(max_tokens=1500, plan="free"), Q)


# --- offline versus live ---------------------------------------------------------------------
def test_claude_offline_is_answered_by_the_flagged_offline_generator():
    r = pipeline().run(make_config(model="claude-3-haiku"), Q)
    assert r.generator == "offline" and r.model_used == "claude-3-haiku"
    assert not r.fallback_used and r.notice and "ANTHROPIC_API_KEY" in r.notice


def test_forced_live_without_any_provider_fails_clearly():
    with pytest.raises(ModelUnavailableError, match=r"'openai' is not configured here"):
        pipeline(generation="live").run(make_config(), Q)


def test_forced_offline_ignores_configured_providers():
    keyed = no_providers().model_copy(update={"openai_api_key": "sk-test-not-a-real-key"})
    p = pipeline(generation="offline", settings=keyed)
    assert not p.live and p.run(make_config(), Q).generator == "offline"


def test_a_key_in_the_settings_builds_the_real_client_which_cannot_reach_the_network():
    # The real openai client is constructed, and every attempt fails on the disabled
    # socket: proof the default test run makes no network call.
    keyed = no_providers().model_copy(update={"openai_api_key": "sk-test-not-a-real-key"})
    sleeps = []

    async def record(seconds):
        sleeps.append(seconds)

    p = pipeline(settings=keyed, sleep=record)
    assert p.live
    with pytest.raises(ModelUnavailableError, match=r"API(Connection|Timeout)Error") as info:
        p.run(make_config(max_retries=1), Q)
    assert len(info.value.detail["attempts"]) == 2 and len(sleeps) == 1


def test_the_sync_door_refuses_to_wait_for_itself():
    from m11_tenant.rag.blocking import run_blocking

    p = pipeline()

    async def nested():
        return p.run(make_config(), Q)

    with pytest.raises(RuntimeError, match="await the async method"):
        run_blocking(nested())


def test_the_four_course_tenants_from_the_repository_get_four_configured_results(sqlite_repo):
    from m11_tenant.seed import load_example_tenants, seed_tenants

    seed_tenants(sqlite_repo)
    four = [t.tenant_id for t in load_example_tenants()][:4]
    p = RagPipeline(sqlite_repo, InMemoryLedger(), index=fixture_index(), catalog=catalog(),
                    clock=lambda: FIXED_NOW, settings=no_providers())
    results = [p.query(t, Q) for t in four]
    for tid, r in zip(four, results, strict=True):
        cfg = sqlite_repo.get_config(tid)
        assert r.model_used == cfg.model
        assert len(r.sources) == (cfg.effective_rerank_top_n if cfg.enable_reranking
                                  else cfg.top_k)
        assert r.usage.completion_tokens <= cfg.max_tokens
        for value in cfg.prompt_variables.values():
            assert value in r.prompt
    assert len({(r.model_used, tuple(s.id for s in r.sources), r.prompt) for r in results}) == 4
    assert len({r.cost_usd for r in results}) == 4


def test_passages_that_would_overflow_the_context_window_are_dropped_from_the_end():
    import dataclasses

    from m11_tenant.rag.plans import CatalogView

    full = catalog()
    small = dataclasses.replace(full.model("gpt-3.5-turbo"), context_window=450)
    tight = CatalogView({**full.models, "gpt-3.5-turbo": small}, full.plans)
    p = RagPipeline(index=fixture_index(), catalog=tight, settings=no_providers())
    cfg = make_config(top_k=10, max_tokens=200)
    r = p.run(cfg, Q)
    assert 1 <= len(r.sources) < 10
    assert r.usage.prompt_tokens + cfg.max_tokens <= 450
    assert [s.id for s in r.sources] == [s.id for s in pipeline().run(cfg, Q).sources][
        :len(r.sources)]


def test_summary_is_the_comparable_subset():
    r = pipeline().run(make_config(top_k=2), Q)
    s = r.summary()
    assert s["sources"] == [x.id for x in r.sources] and s["cost_usd"] == r.cost_usd
    assert "prompt" not in s and "timings_ms" not in s
