"""Live generation through the official SDKs, over real HTTP, against local stand-ins.

Every whitelisted model answers live; retries, backoff, Retry-After, timeouts, malformed
replies and fallbacks happen as configured and are recorded; an invalid key is not retried;
a model that keeps failing ends in a ModelUnavailableError listing every attempt. The API's
/query, the console preview and ``python -m m11_tenant check --live`` work the same way.
No test here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest
from rag_support import (
    FIXED_NOW,
    DictConfigSource,
    catalog,
    fixture_index,
    make_config,
)

from m11_tenant.errors import ModelUnavailableError
from m11_tenant.rag.blocking import run_blocking
from m11_tenant.rag.generate import backoff_seconds
from m11_tenant.rag.ledger import InMemoryLedger
from m11_tenant.rag.pipeline import RagPipeline
from m11_tenant.rag.plans import CatalogView, price
from m11_tenant.rag.providers import retry_after_seconds
from m11_tenant.rag.standins import Fault, StandIn
from m11_tenant.schema import load_catalog

Q = "How can I stop one customer from seeing another customer's records?"
TIMEOUT = 10.0  # seconds per attempt: generous, so a loaded CI box never times out by accident
HANG_TIMEOUT = 1.0  # the test that hangs on purpose waits this long


@pytest.fixture(scope="module")
def server():
    with StandIn() as standin:
        yield standin


@pytest.fixture
def standin(server):
    server.reset()
    server.latency = 0.0
    return server


class Sleeps(list):
    """Records each backoff instead of waiting it out."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def live(standin, configs=None, ledger=None, *, catalog_view=None, sleeps=None, **settings):
    settings.setdefault("m11_model_timeout", TIMEOUT)
    return RagPipeline(DictConfigSource(configs or {}), ledger or InMemoryLedger(),
                       index=fixture_index(), clock=lambda: FIXED_NOW,
                       catalog=catalog_view or catalog(), settings=standin.settings(**settings),
                       sleep=sleeps if sleeps is not None else Sleeps(), jitter=lambda: 1.0)


def api_model(name: str) -> str:
    return catalog().model(name).api_model


# --- every model answers live ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(load_catalog().models))
def test_every_whitelisted_model_answers_live_through_its_provider(standin, name):
    model = catalog().model(name)
    r = live(standin).run(make_config(model=name, plan="enterprise", max_tokens=64), Q)
    (seen,) = standin.requests
    assert seen.api == model.provider and seen.model == model.api_model
    assert r.generator == model.provider and r.notice is None and r.attempts == []
    assert r.model_used == name and not r.fallback_used
    assert r.answer.startswith(f"[stand-in {model.api_model}] about:") and r.answer.endswith("[1]")
    # Usage is the provider's (the stand-in counts words), the cost the catalog's.
    assert not r.usage.estimated
    assert r.usage.prompt_tokens == len(r.prompt.split())
    assert r.usage.completion_tokens == len(r.answer.split())
    assert r.cost_usd == price(model, r.usage.prompt_tokens, r.usage.completion_tokens)


def test_the_config_reaches_the_provider(standin):
    cfg = make_config(model="gpt-4-turbo", plan="starter", temperature=0.3, max_tokens=256)
    r = live(standin).run(cfg, Q)
    body = standin.requests[0].body
    assert body["model"] == "gpt-4-turbo" and body["temperature"] == 0.3
    assert body["max_tokens"] == 256
    assert body["messages"] == [{"role": "user", "content": r.prompt}]


def test_a_temperature_above_anthropics_range_is_capped_at_one(standin):
    r = live(standin).run(make_config(model="claude-3-haiku", temperature=1.6), Q)
    assert r.generator == "anthropic"
    assert standin.requests[0].body["temperature"] == 1.0


def test_an_openai_compatible_server_serves_the_catalog_entries_mapped_to_it(standin):
    full = catalog()
    local = dataclasses.replace(full.model("gpt-3.5-turbo"), provider="openai_compatible",
                                api_model="llama3.1:8b")
    remapped = CatalogView({**full.models, "gpt-3.5-turbo": local}, full.plans)
    # Only the compatible server is configured: OpenAI itself is not.
    p = live(standin, catalog_view=remapped, openai_api_key=None, openai_base_url=None,
             openai_compatible_base_url=f"{standin.url}/v1",
             openai_compatible_api_key=standin.keys["openai"])
    r = p.run(make_config(model="gpt-3.5-turbo"), Q)
    assert r.generator == "openai_compatible" and r.answer.startswith("[stand-in llama3.1:8b]")
    assert [s.model for s in standin.requests] == ["llama3.1:8b"]


def test_query_records_the_providers_usage(standin):
    ledger = InMemoryLedger()
    r = live(standin, {"acme": make_config(model="claude-3-haiku")}, ledger).query("acme", Q)
    row = ledger.rows[("acme", FIXED_NOW.date())]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        r.usage.prompt_tokens, r.usage.completion_tokens)
    assert row["cost_usd"] == pytest.approx(r.cost_usd)


# --- retries, backoff, fallbacks ----------------------------------------------------------
def test_transient_errors_are_retried_with_backoff_that_honours_retry_after(standin):
    standin.fail("gpt-3.5-turbo", Fault.rate_limited(retry_after=2), Fault.server_error(502))
    sleeps = Sleeps()
    r = live(standin, sleeps=sleeps).run(make_config(max_retries=2), Q)
    assert [s.outcome for s in standin.requests] == ["429", "502", "ok"]
    assert sleeps == [2.0, 1.0]  # Retry-After beats 0.5 s; then 1 s (jitter fixed at 1)
    assert r.generator == "openai" and not r.fallback_used and len(r.attempts) == 2
    assert "RateLimitError (HTTP 429)" in r.attempts[0]
    assert "InternalServerError (HTTP 502)" in r.attempts[1]


def test_a_hang_past_the_timeout_and_a_malformed_reply_are_retried(standin):
    standin.fail("claude-3-haiku-20240307", Fault.hang(), Fault.malformed())
    p = live(standin, m11_model_timeout=HANG_TIMEOUT)
    r = p.run(make_config(model="claude-3-haiku", max_retries=2), Q)
    assert [s.outcome for s in standin.requests] == ["hang", "malformed", "ok"]
    assert f"timed out after {HANG_TIMEOUT:g} s" in r.attempts[0]
    assert "malformed reply" in r.attempts[1]
    assert r.generator == "anthropic" and not r.fallback_used


def test_an_invalid_key_is_not_retried_and_the_fallback_answers(standin):
    cfg = make_config(model="gpt-4-turbo", fallback_model="claude-3-haiku", plan="starter",
                      max_retries=3)
    r = live(standin, openai_api_key="sk-wrong").run(cfg, Q)
    assert [(s.api, s.outcome) for s in standin.requests] == [("openai", "401"),
                                                              ("anthropic", "ok")]
    assert r.fallback_used and r.model_used == "claude-3-haiku" and r.generator == "anthropic"
    assert len(r.attempts) == 1 and "AuthenticationError (HTTP 401)" in r.attempts[0]


def test_retries_used_up_then_the_fallback_model_answers_and_is_priced(standin):
    standin.fail_always("gpt-4-turbo", Fault.server_error())
    sleeps = Sleeps()
    cfg = make_config(model="gpt-4-turbo", fallback_model="gpt-3.5-turbo", plan="starter",
                      max_retries=2)
    r = live(standin, sleeps=sleeps).run(cfg, Q)
    assert [s.model for s in standin.requests] == ["gpt-4-turbo"] * 3 + ["gpt-3.5-turbo"]
    assert sleeps == [0.5, 1.0]
    assert r.fallback_used and r.model_used == "gpt-3.5-turbo" and len(r.attempts) == 3
    m = catalog().model("gpt-3.5-turbo")  # priced as the model that answered
    assert r.cost_usd == price(m, r.usage.prompt_tokens, r.usage.completion_tokens)


def test_a_retry_after_longer_than_a_caller_can_wait_goes_to_the_fallback(standin):
    standin.fail("gpt-3.5-turbo", Fault.rate_limited(retry_after=120))
    sleeps = Sleeps()
    cfg = make_config(fallback_model="claude-3-haiku", max_retries=3)
    r = live(standin, sleeps=sleeps).run(cfg, Q)
    assert sleeps == [] and r.model_used == "claude-3-haiku"
    assert "asked to wait 120 s" in r.attempts[1]


def test_a_model_that_keeps_failing_lists_every_attempt_and_records_nothing(standin):
    standin.fail_always("gpt-4-turbo", Fault.server_error())
    standin.fail_always("claude-3-haiku-20240307", Fault.rate_limited(retry_after=0))
    ledger = InMemoryLedger()
    cfg = make_config(model="gpt-4-turbo", fallback_model="claude-3-haiku", plan="starter",
                      max_retries=1)
    with pytest.raises(ModelUnavailableError,
                       match=r"tried gpt-4-turbo → claude-3-haiku") as info:
        live(standin, {"acme": cfg}, ledger).query("acme", Q)
    attempts = info.value.detail["attempts"]
    assert [a.split(":")[0] for a in attempts] == [
        "gpt-4-turbo attempt 1", "gpt-4-turbo attempt 2",
        "claude-3-haiku attempt 1", "claude-3-haiku attempt 2"]
    assert all(a in str(info.value) for a in attempts)
    assert len(standin.requests) == 4
    totals = ledger.usage_totals("acme", FIXED_NOW.date())  # the reserved slot given back
    assert (totals.queries_today, totals.tokens_today, totals.cost_month_usd) == (0, 0, 0.0)


def test_a_provider_without_a_key_is_unavailable_when_live(standin):
    p = live(standin, anthropic_api_key=None, anthropic_base_url=None)
    with pytest.raises(ModelUnavailableError, match=r"'anthropic' is not configured here "
                                                    r"\(set ANTHROPIC_API_KEY\)"):
        p.run(make_config(model="claude-3-haiku", max_retries=2), Q)
    r = p.run(make_config(model="claude-3-haiku", fallback_model="gpt-3.5-turbo"), Q)
    assert r.fallback_used and r.generator == "openai" and len(r.attempts) == 1
    assert [s.api for s in standin.requests] == ["openai"]


# --- one worker, many slow calls -------------------------------------------------------------
def test_concurrent_queries_are_all_in_flight_at_once_on_one_event_loop(standin):
    standin.latency = 0.3
    p = live(standin)
    cfg = make_config()

    async def burst():
        try:
            return await asyncio.gather(*(p.arun(cfg, f"{Q} ({i})") for i in range(60)))
        finally:
            await p.aclose()

    results = run_blocking(burst())  # the loop behind the synchronous door
    assert len({r.question for r in results}) == 60
    assert all(r.generator == "openai" for r in results)
    # Not a timing: the stand-in saw all 60 requests waiting at the same moment, more
    # than the ~40 threads a synchronous client would have had.
    assert standin.max_in_flight == 60


# --- settings from .env ------------------------------------------------------------------------
def test_a_dotenv_file_in_the_working_directory_makes_the_pipeline_live(standin, tmp_path,
                                                                        monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
                 "ANTHROPIC_BASE_URL", "OPENAI_COMPATIBLE_BASE_URL", "M11_MODEL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    offline = RagPipeline(index=fixture_index(), catalog=catalog())
    assert not offline.live and offline.run(make_config(), Q).generator == "offline"
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in standin.env().items()))
    p = RagPipeline(index=fixture_index(), catalog=catalog())
    assert p.live and p.providers.configured == ("openai", "anthropic")
    assert p.run(make_config(model="claude-3-haiku"), Q).generator == "anthropic"


# --- pure parts -------------------------------------------------------------------------------
def test_backoff_doubles_with_jitter_caps_and_never_undercuts_retry_after():
    assert [backoff_seconds(a, jitter=1.0) for a in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert backoff_seconds(1, jitter=0.5) == 0.5
    assert backoff_seconds(0, jitter=1.0, retry_after=3) == 3
    assert backoff_seconds(3, jitter=1.0, retry_after=1) == 4


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after": "3"}, 3.0), ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
    ({"retry-after": "soon"}, None), ({}, None),
])
def test_retry_after_is_read_in_every_form_the_http_spec_allows(headers, expected):
    now = 1445412480.0  # 07:28:00 on that day
    assert retry_after_seconds(headers, now=now) == expected


# --- the API, the console and the CLI with live providers -------------------------------------
def test_the_query_endpoint_answers_live(standin, sqlite_repo):
    from api_support import ADMIN, ADMIN_KEY
    from fastapi.testclient import TestClient

    from m11_tenant.app import create_app
    from m11_tenant.settings import Settings

    sqlite_repo.update_config("acme", {"model": "claude-3-haiku"}, actor="test", reason="test")
    pipeline = RagPipeline(sqlite_repo, sqlite_repo.store, index=fixture_index(),
                           catalog=catalog(), settings=standin.settings())
    settings = Settings(_env_file=None, m11_admin_key=ADMIN_KEY)
    with TestClient(create_app(sqlite_repo, settings=settings, pipeline=pipeline)) as client:
        response = client.post("/query", headers=ADMIN, json={"tenant_id": "acme", "query": Q})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["generator"] == "anthropic" and body["notice"] is None
    assert body["answer"].startswith("[stand-in claude-3-haiku-20240307]")


def test_a_failing_provider_is_a_503_naming_the_attempts(standin, sqlite_repo):
    from api_support import ADMIN, ADMIN_KEY
    from fastapi.testclient import TestClient

    from m11_tenant.app import create_app
    from m11_tenant.settings import Settings

    standin.fail_always("gpt-3.5-turbo", Fault.server_error())
    pipeline = RagPipeline(sqlite_repo, sqlite_repo.store, index=fixture_index(),
                           catalog=catalog(), settings=standin.settings(), sleep=Sleeps())
    settings = Settings(_env_file=None, m11_admin_key=ADMIN_KEY)
    with TestClient(create_app(sqlite_repo, settings=settings, pipeline=pipeline)) as client:
        response = client.post("/query", headers=ADMIN, json={"tenant_id": "acme", "query": Q})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "gpt-3.5-turbo attempt 3" in error["message"]
    assert standin.url not in response.text and "127.0.0.1" not in response.text


def test_the_console_preview_answers_live(standin, sqlite_repo):
    from fastapi.testclient import TestClient
    from test_console import ADMIN_KEY, form_of

    from m11_tenant.app import create_app
    from m11_tenant.settings import Settings

    sqlite_repo.update_config("acme", {"plan": "starter"}, actor="seed", reason="seed")
    pipeline = RagPipeline(index=fixture_index(), catalog=catalog(),
                           settings=standin.settings())
    app = create_app(sqlite_repo, settings=Settings(_env_file=None, m11_admin_key=ADMIN_KEY),
                     pipeline=pipeline)
    with TestClient(app) as client:  # one event loop, closed with the app's lifespan
        nonce = re.search(r'name="login_nonce" value="([^"]+)"',
                          client.get("/console/login").text)[1]
        client.post("/console/login", data={"login_nonce": nonce, "key": ADMIN_KEY})
        response = client.post("/console/t/acme/preview", data={
            **form_of(client, "acme"), "model": "claude-3-sonnet", "question": Q})
    assert response.status_code == 200, response.text
    answer = re.search(r'id="preview-answer".*?</span>(.*?)</div>', response.text, re.S)[1]
    assert "[stand-in claude-3-sonnet-20240229]" in answer
    assert "claude-3-sonnet (anthropic)" in response.text
    assert [s.model for s in standin.requests] == ["claude-3-sonnet-20240229"]


def test_check_live_runs_every_tenant_against_the_providers(standin, tmp_path, monkeypatch,
                                                            capsys):
    from m11_tenant.cli import main

    monkeypatch.chdir(tmp_path)
    for name, value in standin.env().items():
        monkeypatch.setenv(name, value)
    url = f"sqlite:///{tmp_path / 'check.db'}"
    assert main(["seed", "--database-url", url]) == 0
    assert main(["check", "--live", "--database-url", url]) == 0
    assert "checked 6 tenant(s) on 4 question(s): all ok" in capsys.readouterr().out
    from m11_tenant import open_repository

    repo = open_repository(url, "")
    models = {catalog().model(repo.get_config(t).model).api_model for t in repo.list_tenants()}
    assert {s.model for s in standin.requests} == models
    assert len(standin.requests) == 6 * 4 and {s.outcome for s in standin.requests} == {"ok"}


def test_check_live_without_any_provider_says_it_checks_offline(tmp_path, monkeypatch, capsys):
    from m11_tenant.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
                 "ANTHROPIC_BASE_URL", "OPENAI_COMPATIBLE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'check.db'}"
    assert main(["seed", "--database-url", url]) == 0
    assert main(["check", "--live", "--database-url", url]) == 0
    captured = capsys.readouterr()
    assert "no model provider is configured" in captured.err and "all ok" in captured.out


def test_a_catalog_entry_with_an_unknown_provider_is_refused_at_load(tmp_path):
    import json
    import shutil

    from m11_tenant.schema import DATA_DIR

    shutil.copy(DATA_DIR / "plans.json", tmp_path / "plans.json")
    doc = json.loads((DATA_DIR / "models.json").read_text())
    doc["models"][0]["provider"] = "mistral"
    (tmp_path / "models.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="provider 'mistral'; known providers: openai, "
                                         "anthropic, openai_compatible"):
        load_catalog(tmp_path)
