"""The console's share of issue 12: the plan is read-only to tenant sessions, signing out
and revoking a key end sessions server-side, and sign-in guessing is throttled.

On every backend this run can reach (the ``repo`` fixture).
"""

from __future__ import annotations

import functools
import re

import pytest
from fastapi.testclient import TestClient

from m11_tenant.app import create_app
from m11_tenant.console.session import SESSION_COOKIE
from m11_tenant.settings import Settings

ADMIN_KEY = "m11a_console-security-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@functools.cache
def pipeline():
    from m11_tenant.rag import RagPipeline

    return RagPipeline()


@pytest.fixture
def app(repo):
    return create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY,
                                              m11_auth_failures="4/hour"),
                      pipeline=pipeline())


@pytest.fixture
def seeded(repo, tenant_id):
    repo.update_config(tenant_id, {"plan": "pro", "model": "gpt-4"}, actor="seed")
    return tenant_id


def client_at(app, address: str = "192.0.2.10") -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 41000))


def try_sign_in(client: TestClient, key: str):
    page = client.get("/console/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)[1]
    return client.post("/console/login", data={"login_nonce": nonce, "key": key},
                       follow_redirects=False)


def sign_in(app, key: str = ADMIN_KEY, address: str = "192.0.2.10") -> TestClient:
    client = client_at(app, address)
    assert try_sign_in(client, key).status_code == 303
    return client


def new_key(app, tenant_id: str) -> tuple[str, str]:
    body = client_at(app, "192.0.2.99").post(f"/tenants/{tenant_id}/keys", headers=ADMIN).json()
    return body["key_id"], body["key"]


def form_of(client: TestClient, tid: str) -> dict[str, str]:
    page = client.get(f"/console/t/{tid}").text
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', page)[1],
            "expected_version": re.search(r'name="expected_version" value="(\d+)"', page)[1]}


def plan_select(page: str) -> str:
    return re.search(r'<select id="[^"]*" name="plan"[^>]*>', page)[0]


def test_the_plan_is_read_only_to_a_tenant_session(app, seeded):
    tenant = sign_in(app, new_key(app, seeded)[1])
    page = tenant.get(f"/console/t/{seeded}").text
    assert "disabled" in plan_select(page) and "Set by the platform admin" in page
    admin_page = sign_in(app).get(f"/console/t/{seeded}").text
    assert "disabled" not in plan_select(admin_page)


@pytest.mark.parametrize("path", ["", "/preview"])
def test_a_tenant_session_posting_a_plan_is_refused_and_nothing_stored(app, repo, seeded,
                                                                        path):
    tenant = sign_in(app, new_key(app, seeded)[1])
    before = (repo.store.get(seeded), repo.store.history(seeded))
    response = tenant.post(f"/console/t/{seeded}{path}", data={
        **form_of(tenant, seeded), "plan": "enterprise", "model": "claude-3-opus",
        "reason": "upgrade myself"}, follow_redirects=False)
    assert response.status_code == 403
    assert "plan is set by the platform admin" in response.text or \
        "may not change plan" in response.text
    assert (repo.store.get(seeded), repo.store.history(seeded)) == before


def test_a_tenant_sessions_rollback_keeps_the_current_plan(app, repo, seeded):
    repo.update_config(seeded, {"plan": "starter", "model": "gpt-4-turbo", "top_k": 2})
    tenant = sign_in(app, new_key(app, seeded)[1])
    token = re.search(r'name="csrf" value="([^"]+)"',
                      tenant.get(f"/console/t/{seeded}/history").text)[1]
    response = tenant.post(f"/console/t/{seeded}/rollback", data={
        "csrf": token, "version": "1", "expected_version": "2"}, follow_redirects=False)
    assert response.status_code == 422  # version 1's gpt-4 is not a starter model
    repo.update_config(seeded, {"model": "gpt-3.5-turbo"})  # v3
    response = tenant.post(f"/console/t/{seeded}/rollback", data={
        "csrf": token, "version": "2", "expected_version": "3"}, follow_redirects=False)
    assert response.status_code == 303
    config = repo.get_config(seeded)
    assert (config.plan, config.model, config.top_k) == ("starter", "gpt-4-turbo", 2)


def test_signing_out_makes_the_old_cookie_worthless(app):
    client = sign_in(app)
    cookie = client.cookies[SESSION_COOKIE]
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console").text)[1]
    client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    copy = client_at(app)
    copy.cookies.set(SESSION_COOKIE, cookie, path="/console")
    response = copy.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"


def test_revoking_a_key_ends_the_console_sessions_signed_in_with_it(app, seeded):
    key_id, key = new_key(app, seeded)
    tenant = sign_in(app, key)
    assert tenant.get(f"/console/t/{seeded}").status_code == 200
    revoked = client_at(app, "192.0.2.99").delete(f"/tenants/{seeded}/keys/{key_id}",
                                                   headers=ADMIN)
    assert revoked.status_code == 200
    response = tenant.get(f"/console/t/{seeded}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"


def test_sign_in_guessing_is_throttled_per_address(app):
    attacker = client_at(app, "203.0.113.50")
    codes = [try_sign_in(attacker, f"m11k_guess_{n}").status_code for n in range(6)]
    assert codes == [401] * 4 + [429] * 2
    refused = try_sign_in(attacker, ADMIN_KEY)  # even the right key, while cooling down
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in refused.text
    assert try_sign_in(client_at(app, "198.51.100.50"), ADMIN_KEY).status_code == 303
