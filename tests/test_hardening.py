"""Issue 13: crafted requests get a 4xx that names the field, store nothing, learn nothing.

The text policy, the JSON digit cap, secrets compared as bytes, ASCII-only form numbers,
health and 503s without infrastructure, relative redirects, security headers and the
access log's redaction. Runs on every backend this run can reach (the ``repo`` fixture).
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from api_support import ADMIN, make_api
from fastapi.testclient import TestClient

from m11_tenant.console.session import LOGIN_COOKIE, SESSION_COOKIE
from m11_tenant.errors import ConfigValidationError
from m11_tenant.schema import validate_config
from m11_tenant.text import check_text, secret_equal, text_problem
from m11_tenant.web.security import RedactingFilter, redact_query

BAD_TEXTS = {
    "lone surrogate": "a\ud800b",
    "NUL": "a\x00b",
    "escape": "a\x1bb",
    "C1 control": "a\x85b",
    "right-to-left override": "p\u202eevil",
    "isolate": "x\u2067y",
}


@pytest.fixture
def api(repo):
    return make_api(repo)


def raw_post(api, path: str, body: str, headers=ADMIN):
    """Post JSON text as written: ``json=`` would refuse lone surrogates client-side."""
    return api.client.post(path, content=body.encode("utf-8", "surrogatepass"),
                           headers={**headers, "Content-Type": "application/json"})


def field_types(response) -> dict[str, str]:
    return {f["field"]: f["type"] for f in response.json()["error"]["fields"]}


# ---- the text policy itself ---------------------------------------------------------------
@pytest.mark.parametrize("name", BAD_TEXTS)
def test_the_policy_refuses_each_kind_and_names_its_code_point(name):
    problem = text_problem(BAD_TEXTS[name], multiline=True)
    assert problem is not None and f"U+{ord(BAD_TEXTS[name][1]):04X}" in problem
    with pytest.raises(ConfigValidationError) as info:
        check_text(BAD_TEXTS[name], "reason")
    assert info.value.errors[0].field == "reason"


def test_newline_and_tab_only_where_text_spans_lines():
    assert text_problem("one\n\ttwo", multiline=True) is None
    assert "line break" in text_problem("one\ntwo")
    assert text_problem("Grüße, 東京, مرحبا, emoji 🙂") is None  # ordinary Unicode is fine


def test_secrets_compare_as_bytes_whatever_arrives():
    assert secret_equal("abc", "abc")
    assert not secret_equal("äbc", "abc")  # hmac.compare_digest("äbc", "abc") raises
    assert not secret_equal("\ud800", "abc")
    assert not secret_equal(None, "abc") and not secret_equal(b"abc", "abc")
    assert not secret_equal("", "")


# ---- JSON bodies ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BAD_TEXTS)
def test_a_bad_reason_is_a_422_and_nothing_is_stored(api, tenant_id, name):
    api.write(tenant_id, {"top_k": 3})
    before = api.snapshot(tenant_id)
    body = json.dumps({"config": {"top_k": 4}, "reason": BAD_TEXTS[name]})
    response = raw_post(api, f"/config/{tenant_id}", body)
    assert response.status_code == 422, response.text
    assert field_types(response) == {"reason": "text_policy"}
    assert api.snapshot(tenant_id) == before


@pytest.mark.parametrize("name", BAD_TEXTS)
def test_bad_text_anywhere_in_a_config_is_refused(api, tenant_id, name):
    bad = BAD_TEXTS[name]
    for config, field in [({"branding": {"logo_url": f"https://cdn.example/{bad}.png"}},
                           "config.branding.logo_url"),
                          ({"prompt_variables": {"company": bad}},
                           "config.prompt_variables.company"),
                          ({"prompt_template": f"{bad}\n{{context}}\n{{query}}"},
                           "config.prompt_template")]:
        response = raw_post(api, f"/config/{tenant_id}", json.dumps({"config": config}))
        assert (response.status_code, field_types(response)) == (
            422, {field: "text_policy"}), response.text
    assert api.repo.store.get(tenant_id) is None


def test_the_schema_holds_the_policy_for_python_callers_too():
    with pytest.raises(ConfigValidationError) as info:
        validate_config({"branding": {"logo_url": "https://a.example/\x00.png"}})
    assert info.value.errors[0].type == "text_policy"
    with pytest.raises(ConfigValidationError):
        validate_config({"prompt_variables": {"x": "a\u202eb"}})


def test_a_lone_surrogate_in_a_query_is_a_422_not_a_tokenizer_crash(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    response = raw_post(api, "/query", json.dumps({"tenant_id": tenant_id,
                                                   "query": "what is \ud800?"}))
    assert (response.status_code, field_types(response)) == (422, {"query": "text_policy"})


def test_bad_text_in_a_bulk_tenant_list_is_a_422(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    response = raw_post(api, "/tenants/bulk", json.dumps(
        {"config": {"top_k": 4}, "tenants": [tenant_id, "x\ud800"]}))
    assert (response.status_code, field_types(response)) == (422, {"tenants[1]": "text_policy"})
    assert api.repo.store.get(tenant_id).version == 1


def test_a_field_name_with_a_control_character_is_refused_without_echoing_it(api, tenant_id):
    response = raw_post(api, f"/config/{tenant_id}", '{"config": {"a\\u0000b": 1}}')
    assert response.status_code == 422 and "\x00" not in response.text


@pytest.mark.parametrize("digits", [21, 4301, 50_000])
def test_a_huge_integer_literal_is_a_400_not_a_500(api, tenant_id, digits):
    response = raw_post(api, f"/config/{tenant_id}", '{"config": {"top_k": ' + "9" * digits
                        + "}}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert "digits" in response.json()["error"]["message"]


def test_a_bad_reason_in_the_query_string_is_a_422(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    response = api.client.delete(f"/config/{tenant_id}", params={"reason": "x\u202ey"},
                                 headers=ADMIN)
    assert (response.status_code, field_types(response)) == (422, {"reason": "text_policy"})
    assert api.repo.store.get(tenant_id) is not None


# ---- the console ---------------------------------------------------------------------------
def signed_in(api) -> tuple[TestClient, str]:
    client = api.client
    page = client.get("/console/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    client.post("/console/login", data={"login_nonce": nonce,
                                        "key": ADMIN["Authorization"].split()[1]})
    return client


def csrf_and_version(client, tid: str) -> dict[str, str]:
    page = client.get(f"/console/t/{tid}").text
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', page)[1],
            "expected_version": re.search(r'name="expected_version" value="(\d+)"', page)[1]}


def raw_cookie(name: str, value: str) -> list[tuple[bytes, bytes]]:
    """A Cookie header as raw UTF-8 bytes (httpx's cookie jar only sends ASCII)."""
    return [(b"cookie", f"{name}={value}".encode())]


@pytest.mark.parametrize("cookie", [SESSION_COOKIE, LOGIN_COOKIE])
def test_a_planted_non_ascii_cookie_is_ignored_not_a_500(api, cookie):
    for path in ("/console/login", "/console"):
        response = api.client.get(path, headers=raw_cookie(cookie, "é.ü"),
                                  follow_redirects=False)
        assert response.status_code in (200, 303), (path, response.text)


def test_a_non_ascii_login_nonce_or_csrf_token_is_a_403(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    response = api.client.post("/console/login", content="login_nonce=%C3%B1&key=x",
                               headers=[*raw_cookie(LOGIN_COOKIE, "ñ"), (
                                   b"content-type", b"application/x-www-form-urlencoded")])
    assert response.status_code == 403
    client = signed_in(make_api(api.repo))
    response = client.post(f"/console/t/{tenant_id}", data={"csrf": "é", "reason": "r",
                                                            "expected_version": "1"})
    assert response.status_code == 403


@pytest.mark.parametrize("version", ["²", "١", "１", "-1", "1" * 13])
def test_console_version_fields_take_ascii_digits_only(api, tenant_id, version):
    api.write(tenant_id, {"top_k": 3})
    client = signed_in(api)
    form = {**csrf_and_version(client, tenant_id), "expected_version": version,
            "top_k": "4", "reason": "r"}
    assert client.post(f"/console/t/{tenant_id}", data=form).status_code == 400
    assert api.repo.store.get(tenant_id).version == 1


def test_console_numbers_in_other_scripts_are_refused_by_the_schema(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    client = signed_in(api)
    form = {**csrf_and_version(client, tenant_id), "top_k": "٤", "temperature": "٠.٥",
            "reason": "r"}
    response = client.post(f"/console/t/{tenant_id}", data=form)
    assert response.status_code == 422
    assert api.repo.store.get(tenant_id).version == 1


@pytest.mark.parametrize("name", BAD_TEXTS)
def test_console_form_text_follows_the_policy(api, tenant_id, name):
    api.write(tenant_id, {"top_k": 3})
    client = signed_in(api)
    form = {**csrf_and_version(client, tenant_id), "branding.logo_url":
            f"https://a.example/{BAD_TEXTS[name]}", "reason": "ok"}
    body = "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass")
    response = client.post(f"/console/t/{tenant_id}", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code in (400, 422) and "\x00" not in response.text
    assert api.repo.store.get(tenant_id).version == 1


def test_a_console_reason_with_a_bidi_override_is_refused(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    client = signed_in(api)
    form = {**csrf_and_version(client, tenant_id), "top_k": "4", "reason": "ok\u202eko"}
    assert client.post(f"/console/t/{tenant_id}", data=form).status_code == 422
    assert [e.reason for e in api.repo.get_audit_log(tenant_id)] == [None]


def test_console_slash_redirect_is_relative_whatever_the_host(api):
    response = api.client.get("/console/", headers={"Host": "evil.example"},
                              follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console")
    assert api.client.get("/health/", headers={"Host": "evil.example"},
                          follow_redirects=False).status_code == 404


# ---- infrastructure stays private -----------------------------------------------------------
def test_health_says_ok_or_degraded_per_service_and_nothing_else(sqlite_repo, caplog):
    api = make_api(sqlite_repo)
    sqlite_repo.store.db.close()
    with caplog.at_level(logging.WARNING, "m11_tenant.api"):
        public = api.client.get("/health").json()
    assert public == {"status": "degraded", "services": {
        "database": "degraded", "cache": "ok", "subscription": "ok"}}
    assert "health degraded" in caplog.text and "SQLite" in caplog.text
    detail = api.client.get("/health/detail", headers=ADMIN).json()
    assert detail["services"]["database"].startswith("down: SQLite")
    assert api.client.get("/health/detail").status_code == 401


def test_a_503_names_no_host_and_says_less_without_a_key(sqlite_repo, tenant_id):
    api = make_api(sqlite_repo)
    sqlite_repo.store.db.close()
    unknown = api.client.get(f"/config/{tenant_id}",
                             headers={"Authorization": "Bearer m11k_abc_unknown"})
    assert unknown.status_code == 503
    assert unknown.json()["error"] == {"code": "service_unavailable", "fields": [],
                                       "message": unknown.json()["error"]["message"]}
    assert "database" not in unknown.text.lower() and "sqlite" not in unknown.text.lower()
    write = api.write(tenant_id, {"top_k": 2})
    assert write.status_code == 503 and write.json()["error"]["code"] == "store_unavailable"
    assert "sqlite" not in write.text.lower() and "closed" not in write.text.lower()


def test_every_response_carries_the_security_headers(api):
    for path in ("/health", "/docs", "/redoc", "/openapi.json", "/nowhere"):
        headers = api.client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    console = api.client.get("/console/login").headers["content-security-policy"]
    assert "default-src 'none'" in console  # the console's own stricter policy is kept


@pytest.mark.parametrize("path,expected", [
    ("/config/acme?api_key=s3cret&limit=5", "/config/acme?api_key=[redacted]&limit=5"),
    ("/x?token=a&Authorization=b&q=key", "/x?token=[redacted]&Authorization=[redacted]&q=key"),
    ("/x?csrf=1&session_id=2&password=3", "/x?csrf=[redacted]&session_id=[redacted]"
                                          "&password=[redacted]"),
    ("/audit?tenant_id=acme&limit=10", "/audit?tenant_id=acme&limit=10"),
    ("/health", "/health")])
def test_credential_looking_query_parameters_are_redacted(path, expected):
    assert redact_query(path) == expected


def test_the_access_log_line_never_holds_the_key():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/config/a?api_key=m11k_x_secret", "1.1",
                                401), None)
    assert RedactingFilter().filter(record)
    assert "m11k_x_secret" not in record.getMessage()
    assert "/config/a?api_key=[redacted]" in record.getMessage()


# ---- refused attempts: counted under the caller, never a flood --------------------------------
def test_repeated_refusals_are_one_row_with_a_count_under_the_caller(api, tenant_id):
    victim = tenant_id + "-victim"
    api.write(tenant_id, {"top_k": 3})
    api.write(victim, {"top_k": 3})
    key = api.key_for(tenant_id)
    victim_log = api.repo.get_audit_log(victim)
    for _ in range(200):
        assert api.client.get(f"/config/{victim}", headers=key).status_code == 403
    assert api.repo.get_audit_log(victim) == victim_log
    denied = [e for e in api.repo.get_audit_log(tenant_id) if e.action == "denied"]
    assert [(e.count, e.tenant_id) for e in denied] == [(200, tenant_id)]
    assert denied[0].actor.startswith("key:") and repr(victim) in denied[0].reason
    shown = api.client.get("/audit", headers=key).json()["entries"]
    assert [e["count"] for e in shown if e["action"] == "denied"] == [200]


def test_made_up_tenants_get_no_rows(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    key = api.key_for(tenant_id)
    made_up = [f"ghost-{n:03d}" for n in range(100)]
    for ghost in made_up:
        assert api.client.get(f"/config/{ghost}", headers=key).status_code == 403
    every_tenant = {e.tenant_id for e in api.repo.get_audit_log(limit=1000)}
    assert every_tenant == {tenant_id}
    assert all(api.repo.store.get(ghost) is None for ghost in made_up)


def test_a_caller_whose_tenant_has_no_config_writes_no_row(api, tenant_id, caplog):
    key = api.key_for(tenant_id)  # the key exists, the tenant's config does not
    rows = api.repo.get_audit_log(limit=1000)
    with caplog.at_level(logging.WARNING, "m11_tenant.api"):
        assert api.client.get("/tenants", headers=key).status_code == 403
    assert api.repo.get_audit_log(limit=1000) == rows
    assert "refused key:" in caplog.text


def test_a_new_window_starts_a_new_row(repo, tenant_id, clock):
    from m11_tenant.store import Change

    repo.update_config(tenant_id, {"top_k": 3})
    change = Change("key:abc", "tenant", "denied", "refused: read tenant 'x'")
    for _ in range(3):
        repo.store.record_refusal(tenant_id, change, 3600)
    clock.advance(hours=1)
    repo.store.record_refusal(tenant_id, change, 3600)
    repo.store.record_refusal(tenant_id, Change("key:abc", "tenant", "denied", "other"), 3600)
    denied = [(e.count, e.reason) for e in repo.get_audit_log(tenant_id) if e.action == "denied"]
    assert denied == [(1, "other"), (1, change.reason), (3, change.reason)]


@pytest.mark.parametrize("name", BAD_TEXTS)
def test_no_write_path_can_store_a_bad_reason(repo, tenant_id, name):
    """The store's Change refuses it too: CLI imports and notebooks go through it."""
    with pytest.raises(ConfigValidationError):
        repo.update_config(tenant_id, {"top_k": 3}, reason=BAD_TEXTS[name])
    assert repo.store.get(tenant_id) is None and repo.get_audit_log(tenant_id) == []
