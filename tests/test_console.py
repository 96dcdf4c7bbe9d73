"""Every console page and form path through FastAPI's TestClient: sign-in, CSRF, 403 for
other tenants, validation errors, conflicts, preview, history, rollback, audit.

The app runs on the ``repo`` fixture, so these run on every backend this run can reach.
"""

from __future__ import annotations

import functools
import html
import re
import uuid

import pytest
from fastapi.testclient import TestClient

from m11_tenant.app import create_app
from m11_tenant.console import routes
from m11_tenant.console.session import LOGIN_COOKIE, SESSION_COOKIE
from m11_tenant.settings import Settings
from m11_tenant.store import Change, LoggedQuery
from m11_tenant.web.auth import hash_key, new_tenant_key

ADMIN_KEY = "m11a_console-tests-admin-key-0123456789"


@functools.cache
def pipeline():
    """The real RAG pipeline (offline generator), built once: previews only call run()."""
    from m11_tenant.rag import RagPipeline

    return RagPipeline()


def make_app(repo, **settings):
    return create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY, **settings),
                      pipeline=pipeline())


@pytest.fixture
def app(repo):
    return make_app(repo)


def sign_in(app, key: str = ADMIN_KEY) -> TestClient:
    client = TestClient(app)
    page = client.get("/console/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    response = client.post("/console/login", data={"login_nonce": nonce, "key": key},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def csrf_of(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text)[1]


def form_of(client: TestClient, tid: str) -> dict:
    """What the config page's form posts untouched: every input with its shown value."""
    page = client.get(f"/console/t/{tid}")
    assert page.status_code == 200
    return {"csrf": csrf_of(page.text),
            "expected_version": re.search(r'name="expected_version" value="(\d+)"', page.text)[1]}


def field_error(text: str, dom_id: str) -> str:
    match = re.search(rf'id="{dom_id}-error">(.*?)</p>', text, re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", match[1])) if match else ""


def tenant_key(repo, tid: str) -> str:
    key_id, key = new_tenant_key()
    repo.store.add_api_key(tid, key_id, hash_key(key), Change("admin", "admin", "key_created"))
    return key


@pytest.fixture
def seeded(repo, tenant_id):
    repo.update_config(tenant_id, {"plan": "free", "temperature": 0.7}, actor="seed",
                       reason="seed")
    return tenant_id


# ---- sign-in -------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("get", "/console"), ("get", "/console/t/acme-co"), ("get", "/console/t/acme-co/history"),
    ("get", "/console/t/acme-co/audit"), ("post", "/console/t/acme-co"),
    ("post", "/console/t/acme-co/preview"), ("post", "/console/t/acme-co/rollback"),
    ("post", "/console/logout")])
def test_every_page_needs_a_sign_in(app, method, path):
    client = TestClient(app)
    response = getattr(client, method)(path, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console/login")


def test_sign_in_sets_a_strict_httponly_session_cookie_without_the_key(app):
    client = TestClient(app)
    page = client.get("/console/login")
    assert page.status_code == 200 and LOGIN_COOKIE in page.headers["set-cookie"]
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    response = client.post("/console/login", data={"login_nonce": nonce, "key": ADMIN_KEY},
                           follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console")
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert ADMIN_KEY not in cookie
    assert client.get("/console/login", follow_redirects=False).status_code == 303


def test_a_wrong_key_is_refused_and_not_echoed(app):
    client = TestClient(app)
    nonce = re.search(r'value="([^"]+)"', client.get("/console/login").text)[1]
    response = client.post("/console/login", data={"login_nonce": nonce,
                                                    "key": "m11k_guess_secret-value"})
    assert response.status_code == 401
    assert "is not the admin key" in response.text and "secret-value" not in response.text
    assert SESSION_COOKIE not in client.cookies


def test_sign_in_without_the_form_nonce_is_refused(app):
    client = TestClient(app)
    client.get("/console/login")
    response = client.post("/console/login", data={"login_nonce": "forged", "key": ADMIN_KEY})
    assert response.status_code == 403 and SESSION_COOKIE not in client.cookies


def test_a_forged_session_cookie_is_a_sign_in_page(app):
    client = TestClient(app)
    client.cookies.set(SESSION_COOKIE, "eyJyIjoiYWRtaW4ifQ.deadbeef", path="/console")
    response = client.get("/console", follow_redirects=False)
    assert response.headers["location"] == "/console/login"


def test_sign_out_needs_the_csrf_token(app):
    client = sign_in(app)
    assert client.post("/console/logout", data={"csrf": "nope"}).status_code == 403
    token = csrf_of(client.get("/console").text)
    response = client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert response.headers["location"] == "/console/login"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]


# ---- tenant list ---------------------------------------------------------------------------
def test_the_admin_lists_searches_and_filters_tenants(app, repo, monkeypatch):
    stem = f"lst-{uuid.uuid4().hex[:6]}"
    for name, plan, model in [("a", "pro", "gpt-4"), ("b", "free", "gpt-3.5-turbo"),
                              ("c", "pro", "claude-3-sonnet")]:
        repo.update_config(f"{stem}-{name}", {"plan": plan, "model": model})
    client = sign_in(app)
    page = client.get("/console", params={"q": stem})
    assert [f"{stem}-{n}" for n in "abc"] == re.findall(rf'>({stem}-[abc])</a>', page.text)
    page = client.get("/console", params={"q": stem, "plan": "pro"})
    assert re.findall(rf'>({stem}-[abc])</a>', page.text) == [f"{stem}-a", f"{stem}-c"]
    monkeypatch.setattr(routes, "PAGE_SIZE", 2)
    second = client.get("/console", params={"q": stem, "page": 2})
    assert re.findall(rf'>({stem}-[abc])</a>', second.text) == [f"{stem}-c"]
    assert "Page 2 of 2" in second.text


def test_a_search_for_an_unstored_tenant_offers_to_open_it(app, tenant_id):
    page = sign_in(app).get("/console", params={"q": tenant_id})
    assert f'href="/console/t/{tenant_id}"' in page.text and "runs on the defaults" in page.text


def test_a_bad_list_query_is_an_html_error(app):
    client = sign_in(app)
    response = client.get("/console", params={"plan": "platinum"})
    assert response.status_code == 422 and "unknown plan" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert client.get("/console", params={"page": "zero"}).status_code == 422


def test_a_tenant_key_goes_straight_to_its_own_tenant(app, repo, seeded):
    client = sign_in(app, tenant_key(repo, seeded))
    response = client.get("/console", follow_redirects=False)
    assert response.headers["location"] == f"/console/t/{seeded}"


# ---- the config page -----------------------------------------------------------------------
def test_the_config_page_shows_the_stored_config_with_plan_filtered_models(app, seeded):
    page = sign_in(app).get(f"/console/t/{seeded}")
    assert page.status_code == 200
    assert 'name="temperature" value="0.7"' in page.text
    assert re.search(r'<option value="gpt-4"\s+disabled hidden>', page.text)  # not on free
    assert re.search(r'<option value="claude-3-haiku"\s*>', page.text)
    assert 'name="expected_version" value="1"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["", "/history", "/audit"])
def test_another_tenants_pages_are_403_and_audited(app, repo, seeded, path):
    other = f"oth-{uuid.uuid4().hex[:8]}"
    client = sign_in(app, tenant_key(repo, seeded))
    response = client.get(f"/console/t/{other}{path}")
    assert response.status_code == 403 and "may not" in response.text
    assert repo.get_audit_log(other) == []  # counted under the caller, not the target
    assert repo.get_audit_log(seeded)[0].action == "denied"


@pytest.mark.parametrize("path", ["", "/preview", "/rollback"])
def test_another_tenants_forms_are_403_and_change_nothing(app, repo, seeded, path):
    other = f"oth-{uuid.uuid4().hex[:8]}"
    repo.update_config(other, {"temperature": 0.4})
    client = sign_in(app, tenant_key(repo, seeded))
    token = csrf_of(client.get(f"/console/t/{seeded}").text)
    response = client.post(f"/console/t/{other}{path}", data={
        "csrf": token, "expected_version": "1", "version": "1", "temperature": "1.5",
        "reason": "sneaky"})
    assert response.status_code == 403
    assert repo.get_record(other).version == 1


def test_an_invalid_tenant_id_is_a_400_page(app):
    response = sign_in(app).get("/console/t/Not_Valid")
    assert response.status_code == 400 and "tenant id" in response.text


# ---- saving --------------------------------------------------------------------------------
def test_save_stores_the_change_with_reason_and_actor(app, repo, seeded):
    client = sign_in(app)
    data = {**form_of(client, seeded), "temperature": "0.3", "enable_reranking": "true",
            "rerank_top_n": "3", "var_name": "company", "var_value": "Acme",
            "prompt_template": "For {company}:\r\n{context}\r\n{query}",
            "reason": "calmer answers"}
    response = client.post(f"/console/t/{seeded}", data=data, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (
        303, f"/console/t/{seeded}?saved=2")
    stored = repo.get_record(seeded)
    assert (stored.version, stored.config.temperature, stored.config.enable_reranking,
            stored.config.rerank_top_n, stored.config.prompt_variables,
            stored.config.prompt_template) == (
        2, 0.3, True, 3, {"company": "Acme"}, "For {company}:\n{context}\n{query}")
    entry = repo.get_audit_log(seeded)[0]
    assert (entry.actor, entry.reason) == ("admin", "calmer answers")
    assert "Saved version 2." in client.get(response.headers["location"]).text


def test_a_tenant_key_saves_as_its_key(app, repo, seeded):
    client = sign_in(app, tenant_key(repo, seeded))
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "top_k": "4", "reason": "fewer passages"},
        follow_redirects=False)
    assert response.status_code == 303
    entry = repo.get_audit_log(seeded)[0]
    assert entry.actor.startswith("key:") and entry.role == "tenant"


def test_an_invalid_value_is_shown_next_to_its_field_and_the_edit_is_kept(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "max_tokens": "3000", "top_k": "7", "reason": "more"})
    assert response.status_code == 422
    assert "exceeds the free plan's cap of 1000" in field_error(response.text, "f-max-tokens")
    assert 'name="max_tokens" value="3000"' in response.text
    assert 'name="top_k" value="7"' in response.text and 'value="more"' in response.text
    assert 'aria-invalid="true"' in response.text and 'id="error-summary"' in response.text
    assert repo.get_record(seeded).version == 1


def test_a_value_the_form_cannot_read_gets_the_schemas_message(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "temperature": "warm", "reason": "x"})
    assert response.status_code == 422
    assert "valid number" in field_error(response.text, "f-temperature")
    assert 'value="warm"' in response.text


def test_a_save_needs_a_reason(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "temperature": "0.2", "reason": "  "})
    assert response.status_code == 422
    assert "audit log" in field_error(response.text, "f-reason")
    assert 'name="temperature" value="0.2"' in response.text
    assert repo.get_record(seeded).version == 1


def test_form_and_schema_problems_are_reported_together(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "var_name": ["a", "a"], "var_value": ["1", "2"],
        "alpha": "1.5", "reason": ""})
    assert response.status_code == 422
    assert "appears twice" in field_error(response.text, "f-prompt-variables")
    assert "less than or equal to 1" in field_error(response.text, "f-alpha")
    assert "audit log" in field_error(response.text, "f-reason")


@pytest.mark.parametrize("token", ["", "forged"])
def test_a_save_without_the_csrf_token_is_refused(app, repo, seeded, token):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        "csrf": token, "expected_version": "1", "temperature": "0.1", "reason": "x"})
    assert response.status_code == 403 and "reload the page" in response.text
    assert repo.get_record(seeded).version == 1


def test_a_csrf_token_from_another_session_is_refused(app, repo, seeded):
    theirs = form_of(sign_in(app), seeded)
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **theirs, "temperature": "0.1", "reason": "x"})
    assert response.status_code == 403


def test_a_stale_save_is_explained_and_the_edit_is_carried_over(app, repo, seeded):
    client = sign_in(app)
    data = form_of(client, seeded)
    repo.update_config(seeded, {"alpha": 0.9}, actor="key:colleague", reason="semantic")
    response = client.post(f"/console/t/{seeded}", data={
        **data, "top_k": "9", "alpha": "0.5", "reason": "more passages"})
    assert response.status_code == 409
    assert "Someone else saved first" in response.text and "key:colleague" in response.text
    assert 'name="top_k" value="9"' in response.text      # the user's change
    assert 'name="alpha" value="0.9"' in response.text    # theirs, not undone
    assert 'name="expected_version" value="2"' in response.text
    assert repo.get_record(seeded).config.top_k == 5
    again = client.post(f"/console/t/{seeded}", data={
        "csrf": data["csrf"], "expected_version": "2", "top_k": "9", "alpha": "0.9",
        "reason": "more passages"}, follow_redirects=False)
    assert again.status_code == 303
    assert (repo.get_config(seeded).top_k, repo.get_config(seeded).alpha) == (9, 0.9)


@pytest.mark.parametrize("value", ["", "two", "-1", "9" * 13])
def test_a_bad_expected_version_is_a_400(app, seeded, value):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "expected_version": value, "reason": "x"})
    assert response.status_code == 400 and "version number" in response.text


def test_a_json_body_is_refused_with_415(app, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", json={"temperature": 0.1})
    assert response.status_code == 415 and "x-www-form-urlencoded" in response.text


def test_an_oversized_form_is_refused_with_413(repo, seeded):
    app = make_app(repo, m11_max_body_bytes=1024)
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "prompt_template": "x" * 2000, "reason": "long"})
    assert response.status_code == 413


def test_a_tenant_keys_rate_limit_keeps_the_edit(repo, seeded):
    app = make_app(repo, m11_rate_config_writes="1/hour")
    client = sign_in(app, tenant_key(repo, seeded))
    first = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "top_k": "6", "reason": "one"}, follow_redirects=False)
    assert first.status_code == 303
    second = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "top_k": "8", "reason": "two"})
    assert second.status_code == 429 and "Retry-After" in second.headers
    assert 'name="top_k" value="8"' in second.text and "rate limited" in second.text
    assert repo.get_config(seeded).top_k == 6


# ---- preview -------------------------------------------------------------------------------
def test_preview_answers_with_the_unsaved_config_in_its_branding(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "branding.primary_color": "#FF6B35",
        "branding.logo_url": "https://cdn.example.com/logo.png",
        "question": "How do I roll back a config?"})
    assert response.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])[1]
    style = re.search(rf'<style nonce="{re.escape(nonce)}">(.*?)</style>', response.text, re.S)[1]
    assert "--brand: #FF6B35" in style and "--brand-text: #111111" in style
    assert 'src="https://cdn.example.com/logo.png"' in response.text
    assert 'id="preview-answer"' in response.text and "How do I roll back a config?" in response.text
    assert "branding.primary_color" in response.text  # the unsaved-changes table
    assert 'name="branding.primary_color" value="#FF6B35"' in response.text
    assert repo.get_record(seeded).version == 1  # nothing stored


def test_preview_of_an_invalid_config_shows_the_errors(app, repo, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "model": "gpt-4"})
    assert response.status_code == 422
    assert "not allowed on the free plan" in field_error(response.text, "f-model")
    assert 'id="preview-answer"' not in response.text


def test_preview_of_an_overlong_question_shows_it_next_to_the_question(app, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "question": "why? " * 500})
    assert response.status_code == 422
    assert field_error(response.text, "f-question")


def test_preview_panel_replays_logged_questions(app, repo, seeded):
    repo.update_config(seeded, {"query_log_size": 10})
    for question in ("What is hybrid search?", "How do I roll back a config?"):
        repo.store.append_query_log(
            LoggedQuery(seeded, question, (), "gpt-3.5-turbo", 0, 0, 0.0), keep=10)
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "top_k": "9", "replay": "2"})
    assert response.status_code == 200, response.text
    report = re.search(r'id="replay-report".*?</section>', response.text, re.S)[0]
    assert "Replay of 2 logged questions (offline)" in report
    assert "What is hybrid search?" in report and "How do I roll back a config?" in report
    assert 'name="replay" value="2"' in response.text
    assert repo.get_record(seeded).version == 2  # nothing stored
    assert repo.get_audit_log(seeded)[0].action == "replay"


@pytest.mark.parametrize("replay", ["0", "abc", "500"])
def test_a_bad_replay_count_is_shown_next_to_its_box(app, seeded, replay):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "replay": replay})
    assert response.status_code == 422
    assert "integer from 1 to 200" in field_error(response.text, "f-replay")


def test_replay_without_a_query_log_says_how_to_turn_it_on(app, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/preview", data={
        **form_of(client, seeded), "replay": "5"})
    assert response.status_code == 422
    assert "query_log_size" in field_error(response.text, "f-replay")


def test_explain_page_lists_every_field_with_its_origin(app, repo, seeded):
    client = sign_in(app, tenant_key(repo, seeded))
    page = client.get(f"/console/t/{seeded}/explain")
    assert page.status_code == 200
    table = html.unescape(re.sub(r"<[^>]+>", " ", re.search(
        r'id="explain".*?</table>', page.text, re.S)[0]))
    assert re.search(r"temperature\s+0.7\s+default", table)
    assert "Only the platform admin may change: plan" in html.unescape(page.text)
    assert sign_in(app, tenant_key(repo, seeded + "-x")).get(
        f"/console/t/{seeded}/explain").status_code == 403


# ---- history, rollback, audit --------------------------------------------------------------
def test_history_compares_any_two_versions(app, repo, seeded):
    repo.update_config(seeded, {"temperature": 0.2, "top_k": 8})
    repo.update_config(seeded, {"alpha": 0.1})
    client = sign_in(app)
    default = client.get(f"/console/t/{seeded}/history")
    assert "1 field(s) differ between version 2 and version 3" in default.text
    page = client.get(f"/console/t/{seeded}/history", params={"a": 1, "b": 3})
    assert "3 field(s) differ between version 1 and version 3" in page.text
    assert re.search(r"<code>temperature</code>.*?<pre>0.7</pre>.*?<pre>0.2</pre>", page.text,
                     re.S)
    same = client.get(f"/console/t/{seeded}/history", params={"a": 2, "b": 2})
    assert "are identical" in same.text
    missing = client.get(f"/console/t/{seeded}/history", params={"a": 99})
    assert "version 99 is not kept" in missing.text


def test_history_of_a_tenant_on_the_defaults(app, tenant_id):
    page = sign_in(app).get(f"/console/t/{tenant_id}/history")
    assert page.status_code == 200 and "no history" in page.text


def test_rollback_restores_a_version_as_a_new_one(app, repo, seeded):
    repo.update_config(seeded, {"temperature": 0.2})
    client = sign_in(app)
    token = csrf_of(client.get(f"/console/t/{seeded}/history").text)
    response = client.post(f"/console/t/{seeded}/rollback", data={
        "csrf": token, "version": "1", "expected_version": "2"}, follow_redirects=False)
    assert response.headers["location"] == f"/console/t/{seeded}?saved=3&rolled_back=1"
    assert (repo.get_record(seeded).version, repo.get_config(seeded).temperature) == (3, 0.7)
    assert repo.get_audit_log(seeded)[0].reason == "rollback to version 1"
    page = client.get(response.headers["location"])
    assert "Rolled back to version 1: saved as version 3." in page.text


def test_a_stale_rollback_is_refused_and_explained(app, repo, seeded):
    repo.update_config(seeded, {"temperature": 0.2})
    client = sign_in(app)
    token = csrf_of(client.get(f"/console/t/{seeded}/history").text)
    repo.update_config(seeded, {"temperature": 0.9})
    response = client.post(f"/console/t/{seeded}/rollback", data={
        "csrf": token, "version": "1", "expected_version": "2", "reason": "undo"})
    assert response.status_code == 409 and "Nothing was rolled back" in response.text
    assert repo.get_record(seeded).version == 3


def test_rollback_to_an_unkept_version_is_a_404_banner(app, repo, seeded):
    client = sign_in(app)
    token = csrf_of(client.get(f"/console/t/{seeded}/history").text)
    response = client.post(f"/console/t/{seeded}/rollback", data={
        "csrf": token, "version": "42", "expected_version": "1"})
    assert response.status_code == 404 and "no kept version 42" in response.text


def test_rollback_needs_the_csrf_token(app, repo, seeded):
    repo.update_config(seeded, {"temperature": 0.2})
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}/rollback", data={
        "csrf": "x", "version": "1", "expected_version": "2"})
    assert response.status_code == 403 and repo.get_record(seeded).version == 2


def test_the_audit_page_lists_changes_newest_first_and_pages(app, repo, seeded, monkeypatch):
    repo.update_config(seeded, {"top_k": 9}, actor="key:abc", role="tenant",
                       reason="more context")
    monkeypatch.setattr(routes, "PAGE_SIZE", 1)
    client = sign_in(app)
    first = client.get(f"/console/t/{seeded}/audit")
    assert "more context" in first.text and "<del>5</del>" in first.text
    assert 'rel="next"' in first.text
    second = client.get(f"/console/t/{seeded}/audit", params={"page": 2})
    assert "seed" in second.text and 'rel="prev"' in second.text


# ---- assets --------------------------------------------------------------------------------
def test_assets_are_served_by_the_app(app):
    client = TestClient(app)
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/console/static/console.js").headers["content-type"].startswith(
        "text/javascript")
    assert client.get("/console/static/../app.py").status_code == 404
    assert client.get("/console/static/missing.css").status_code == 404


def test_pages_reference_nothing_outside_the_app(app, seeded):
    client = sign_in(app)
    for path in ("/console", f"/console/t/{seeded}", f"/console/t/{seeded}/history",
                 f"/console/t/{seeded}/audit"):
        text = client.get(path).text
        assert not re.findall(r'(?:src|href|action)="(?:https?:)?//', text), path


def test_the_console_stays_out_of_the_api_schema(app):
    assert not any(p.startswith("/console") for p in TestClient(app).get(
        "/openapi.json").json()["paths"])


def test_a_refused_partial_post_shows_the_stored_values_for_the_rest(app, seeded):
    client = sign_in(app)
    response = client.post(f"/console/t/{seeded}", data={
        **form_of(client, seeded), "top_k": "99", "reason": "x"})
    assert response.status_code == 422
    assert 'name="top_k" value="99"' in response.text
    assert 'name="temperature" value="0.7"' in response.text


def test_the_api_can_be_served_without_the_console(repo):
    app = create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY), pipeline=pipeline(),
                     console=False)
    client = TestClient(app)
    assert client.get("/console/login").status_code == 404
    assert client.get("/tenants", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                      ).status_code == 200
