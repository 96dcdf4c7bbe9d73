"""Tenant and platform powers through the API: the plan is the platform's, keys are listed,
revoked and rotated, failed authentication is throttled, limits hold without Redis.

On every backend this run can reach (the ``repo`` fixture). The same rules across real
server processes: tests/test_security_servers.py.
"""

from __future__ import annotations

import logging
import socket

import pytest
import redis
from api_support import ADMIN, RateClock, make_api, make_pipeline
from fastapi.testclient import TestClient

from m11_tenant.app import create_app
from m11_tenant.cache import NearCache
from m11_tenant.errors import WeakAdminKeyError
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import PLATFORM_OWNED_FIELDS
from m11_tenant.settings import Settings
from m11_tenant.web.auth import check_admin_key


@pytest.fixture
def api(repo):
    return make_api(repo)


def refused_field(response, field: str = "plan") -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "platform_owned_field"
    assert [f["field"] for f in error["fields"]] == [field]
    assert "platform admin" in error["fields"][0]["message"]


# ---- 1. platform-owned fields ---------------------------------------------------------------
def test_the_plan_is_the_only_platform_owned_field():
    assert PLATFORM_OWNED_FIELDS == ("plan",)


@pytest.mark.parametrize("merge", [True, False])
def test_a_tenant_key_cannot_change_its_plan_and_nothing_is_stored(api, tenant_id, merge):
    api.write(tenant_id, {"plan": "free", "top_k": 3})
    key = api.key_for(tenant_id)
    before = api.snapshot(tenant_id)
    refused_field(api.write(tenant_id, {"plan": "enterprise", "model": "claude-3-opus",
                                        "max_tokens": 4000}, headers=key, merge=merge))
    assert api.snapshot(tenant_id) == before


def test_a_tenant_may_send_its_current_plan_and_a_replace_keeps_it(api, tenant_id):
    api.write(tenant_id, {"plan": "pro", "model": "gpt-4"})
    key = api.key_for(tenant_id)
    same = api.write(tenant_id, {"plan": "pro", "top_k": 4}, headers=key)
    assert same.status_code == 200 and same.json()["config"]["top_k"] == 4
    replaced = api.write(tenant_id, {"model": "gpt-4", "top_k": 2}, headers=key, merge=False)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["config"]["plan"] == "pro"  # not reset to the default "free"


def test_the_admin_changes_plans(api, tenant_id):
    assert api.write(tenant_id, {"plan": "enterprise"}).json()["config"]["plan"] == "enterprise"


def test_a_tenants_rollback_restores_everything_but_the_plan(api, tenant_id):
    api.write(tenant_id, {"plan": "enterprise", "model": "gpt-4", "top_k": 9})      # v1
    api.write(tenant_id, {"plan": "pro", "top_k": 4}, reason="platform downgrade")  # v2
    key = api.key_for(tenant_id)
    response = api.client.post(f"/config/{tenant_id}/rollback?version=1", headers=key)
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert config["plan"] == "pro" and config["top_k"] == 9 and config["model"] == "gpt-4"
    admin = api.client.post(f"/config/{tenant_id}/rollback?version=1", headers=ADMIN)
    assert admin.json()["config"]["plan"] == "enterprise"  # the platform may restore it


def test_a_tenants_rollback_that_does_not_fit_the_current_plan_is_refused(api, tenant_id):
    api.write(tenant_id, {"plan": "enterprise", "model": "claude-3-opus"})  # v1
    api.write(tenant_id, {"plan": "free", "model": "gpt-3.5-turbo"})        # v2
    key = api.key_for(tenant_id)
    before = api.snapshot(tenant_id)
    response = api.client.post(f"/config/{tenant_id}/rollback?version=1", headers=key)
    assert response.status_code == 422
    assert "model" in {f["field"] for f in response.json()["error"]["fields"]}
    assert api.snapshot(tenant_id) == before


def test_a_tenant_cannot_preview_another_plan(api, tenant_id):
    key = api.key_for(tenant_id)
    refused_field(api.client.post(f"/config/{tenant_id}/preview", headers=key,
                                  json={"config": {"plan": "enterprise"}}))
    ok = api.client.post(f"/config/{tenant_id}/preview", headers=ADMIN,
                         json={"config": {"plan": "enterprise"}})
    assert ok.status_code == 200 and ok.json()["config"]["plan"] == "enterprise"


def test_a_bulk_plan_change_reaches_a_locked_tenant_and_says_so(api, tenant_id):
    locked, other = tenant_id, tenant_id + "-other"
    api.write(locked, {"plan": "pro", "model": "gpt-4-turbo", "top_k": 3})
    api.write(other, {"plan": "pro", "model": "gpt-4-turbo", "top_k": 3})
    api.client.put(f"/config/{locked}/lock", headers=api.key_for(locked), json={"locked": True})
    body = api.client.post("/tenants/bulk", headers=ADMIN, json={
        "config": {"plan": "starter", "model": "gpt-3.5-turbo", "top_k": 7},
        "tenants": [locked, other], "reason": "plan migration"}).json()
    assert body["skipped"] == [] and "failed" not in body  # all or nothing: no partial list
    by_id = {item["tenant_id"]: item for item in body["updated"]}
    assert by_id[locked]["only"] == ["plan"] and by_id[other].get("only") is None
    config = api.repo.get_config(locked)
    assert (config.plan, config.model, config.top_k) == ("starter", "gpt-4-turbo", 3)
    line = api.repo.get_audit_log(locked)[0]
    assert line.diff == {"plan": ["pro", "starter"]}
    assert "tenant locked" in line.reason and "plan" in line.reason
    assert api.repo.get_config(other).top_k == 7


def test_a_bulk_change_without_a_plan_still_skips_a_locked_tenant(api, tenant_id):
    api.write(tenant_id, {"top_k": 3})
    api.client.put(f"/config/{tenant_id}/lock", headers=ADMIN, json={"locked": True})
    body = api.client.post("/tenants/bulk", headers=ADMIN, json={
        "config": {"top_k": 7}, "tenants": [tenant_id]}).json()
    assert [s["tenant_id"] for s in body["skipped"]] == [tenant_id]


def test_a_free_tenant_at_its_quota_cannot_buy_its_way_out(api, tenant_id):
    api.write(tenant_id, {"plan": "free"})
    key = api.key_for(tenant_id)
    api.repo.store.record_usage(tenant_id, api.app.state.ctx.pipeline.clock().date(),
                                queries=100, prompt_tokens=0, completion_tokens=0, cost_usd=0)
    query = {"tenant_id": tenant_id, "query": "What is hybrid search?"}
    assert api.client.post("/query", headers=key, json=query).status_code == 429
    refused_field(api.write(tenant_id, {"plan": "enterprise"}, headers=key))
    assert api.client.post("/query", headers=key, json=query).status_code == 429


# ---- 2. key lifecycle -------------------------------------------------------------------------
def new_key(api, tenant_id: str) -> tuple[str, dict[str, str]]:
    body = api.client.post(f"/tenants/{tenant_id}/keys", headers=ADMIN).json()
    return body["key_id"], {"Authorization": f"Bearer {body['key']}"}


def test_keys_are_listed_without_their_secret(api, tenant_id):
    first, header = new_key(api, tenant_id)
    second, _ = new_key(api, tenant_id)
    api.client.get(f"/config/{tenant_id}", headers=header)
    for caller in (ADMIN, header):
        response = api.client.get(f"/tenants/{tenant_id}/keys", headers=caller)
        assert response.status_code == 200
        keys = response.json()["keys"]
        assert {k["key_id"] for k in keys} == {first, second}
        assert all(k["status"] == "active" and k["created_by"] == "admin" for k in keys)
        assert header["Authorization"].split()[1] not in response.text
    used = {k["key_id"]: k["last_used_at"] for k in keys}
    assert used[first] is not None and used[second] is None
    other = api.key_for(tenant_id + "-x")
    assert api.client.get(f"/tenants/{tenant_id}/keys", headers=other).status_code == 403


def test_a_revoked_key_is_refused_and_the_revocation_audited(api, tenant_id):
    key_id, header = new_key(api, tenant_id)
    assert api.client.get(f"/config/{tenant_id}", headers=header).status_code == 200
    response = api.client.delete(f"/tenants/{tenant_id}/keys/{key_id}", headers=ADMIN)
    assert response.status_code == 200 and response.json()["changed"] is True
    assert response.json()["key"]["status"] == "revoked"
    refused = api.client.get(f"/config/{tenant_id}", headers=header)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    again = api.client.delete(f"/tenants/{tenant_id}/keys/{key_id}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["changed"] is False
    actions = [(e.action, e.diff) for e in api.repo.get_audit_log(tenant_id)]
    assert ("key_revoked", {"api_key": [key_id, None]}) in actions
    assert ("key_created", {"api_key": [None, key_id]}) in actions


def test_a_tenant_revokes_its_own_keys_only(api, tenant_id):
    mine, header = new_key(api, tenant_id)
    spare, _ = new_key(api, tenant_id)
    theirs, their_header = new_key(api, tenant_id + "-x")
    assert api.client.delete(f"/tenants/{tenant_id}/keys/{theirs}",
                             headers=header).status_code == 404
    assert api.client.delete(f"/tenants/{tenant_id}-x/keys/{theirs}",
                             headers=header).status_code == 403
    assert api.client.get(f"/config/{tenant_id}-x", headers=their_header).status_code == 200
    assert api.client.delete(f"/tenants/{tenant_id}/keys/{spare}",
                             headers=header).status_code == 200
    assert api.client.delete(f"/tenants/{tenant_id}/keys/{mine}",
                             headers=header).status_code == 200
    assert api.client.get(f"/config/{tenant_id}", headers=header).status_code == 401


def test_rotation_issues_a_new_key_and_revokes_the_old_one(api, tenant_id):
    old_id, old = new_key(api, tenant_id)
    response = api.client.post(f"/tenants/{tenant_id}/keys/{old_id}/rotate", headers=old)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["replaces"]["key_id"] == old_id and body["replaces"]["status"] == "revoked"
    new = {"Authorization": f"Bearer {body['key']}"}
    assert api.client.get(f"/config/{tenant_id}", headers=old).status_code == 401
    assert api.client.get(f"/config/{tenant_id}", headers=new).status_code == 200
    line = next(e for e in api.repo.get_audit_log(tenant_id) if e.action == "key_rotated")
    assert line.diff == {"api_key": [old_id, body["key_id"]]} and "ends now" in line.reason
    again = api.client.post(f"/tenants/{tenant_id}/keys/{old_id}/rotate", headers=ADMIN)
    assert again.status_code == 404  # a revoked key cannot be rotated


def test_rotation_with_a_grace_period_keeps_the_old_key_until_it_ends(api, clock, tenant_id):
    old_id, old = new_key(api, tenant_id)
    body = api.client.post(f"/tenants/{tenant_id}/keys/{old_id}/rotate?grace_seconds=60",
                           headers=ADMIN).json()
    assert body["replaces"]["status"] == "ending"
    assert api.client.get(f"/config/{tenant_id}", headers=old).status_code == 200
    clock.advance(seconds=61)
    api.app.state.ctx.auth.forget(old_id)  # this test's clock jumped: skip the 0.5 s cache
    assert api.client.get(f"/config/{tenant_id}", headers=old).status_code == 401
    keys = api.client.get(f"/tenants/{tenant_id}/keys", headers=ADMIN).json()["keys"]
    assert {k["key_id"]: k["status"] for k in keys} == {old_id: "revoked",
                                                       body["key_id"]: "active"}


@pytest.mark.parametrize("query", ["grace_seconds=-1", "grace_seconds=604801",
                                   "grace_seconds=soon"])
def test_a_bad_grace_period_is_422(api, tenant_id, query):
    key_id, _ = new_key(api, tenant_id)
    response = api.client.post(f"/tenants/{tenant_id}/keys/{key_id}/rotate?{query}",
                               headers=ADMIN)
    assert response.status_code == 422


# ---- 3. the admin key -----------------------------------------------------------------------
@pytest.mark.parametrize("key", ["change-me", "m11a_short", "x" * 40,
                                 "passwordpasswordpasswordpassword",
                                 "12345678901234567890123456789012"])
def test_a_weak_admin_key_is_refused_with_a_way_out(repo, key):
    with pytest.raises(WeakAdminKeyError, match=r"secrets\.token_urlsafe"):
        create_app(repo, settings=Settings(m11_admin_key=key))


def test_a_long_random_admin_key_is_accepted():
    key = "m11a_" + "Zk3v9QxP2m7Lr4Tn8Wb1Hc6Ys0Jd5Fg"
    assert check_admin_key(key) == key


# ---- 4. throttled guessing ------------------------------------------------------------------
def client_from(api, address: str) -> TestClient:
    return TestClient(api.app, raise_server_exceptions=False, client=(address, 40000))


def test_guessing_is_throttled_per_address(repo, tenant_id, caplog):
    near = NearCache(max_entries=100)
    near.enable()  # one process, nothing to invalidate from elsewhere
    repo = TenantConfigRepository(repo.store, repo.cache, near=near)  # GET /config's fast path
    api = make_api(repo, m11_auth_failures="5/hour")
    attacker, bystander = client_from(api, "203.0.113.7"), client_from(api, "198.51.100.2")
    key = api.key_for(tenant_id)
    wrong = {"Authorization": "Bearer m11k_0000_wrong"}
    # The attacker's own key first, twice: its next reads would take GET /config's fast
    # path (a known key and a near-cache hit), which must not step around the throttle.
    api.app.state.ctx.auth._cache_seconds = 3600  # the key stays known however slow this runs
    api.write(tenant_id, {"top_k": 3})
    assert [attacker.get(f"/config/{tenant_id}", headers=key).status_code
            for _ in range(2)] == [200, 200]
    with caplog.at_level(logging.WARNING, logger="m11_tenant.auth"):
        codes = [attacker.get(f"/config/{tenant_id}", headers=wrong).status_code
                 for _ in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert any("203.0.113.7" in r.getMessage() for r in caplog.records)
    refused = attacker.get(f"/config/{tenant_id}", headers=key)  # the right key too
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 3600
    assert attacker.get(f"/config/{tenant_id}", headers=ADMIN).status_code == 429
    assert bystander.get(f"/config/{tenant_id}", headers=key).status_code == 200
    assert bystander.get(f"/config/{tenant_id}", headers=wrong).status_code == 401


def test_a_missing_header_is_not_a_guess(repo, tenant_id):
    api = make_api(repo, m11_auth_failures="2/hour")
    client = client_from(api, "203.0.113.8")
    assert [client.get(f"/config/{tenant_id}").status_code for _ in range(4)] == [401] * 4


# ---- 5. limits without Redis ----------------------------------------------------------------
def unreachable_redis() -> redis.Redis:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.2)


def test_rate_limits_and_the_throttle_hold_in_process_when_redis_is_down(repo, tenant_id):
    app = create_app(repo, settings=Settings(
        m11_admin_key=ADMIN["Authorization"].split()[1], m11_rate_config_writes="10/hour",
        m11_auth_failures="3/hour"), pipeline=make_pipeline(repo), clock=RateClock(),
        rate_client=unreachable_redis())
    client = TestClient(app, raise_server_exceptions=False)
    made = client.post(f"/tenants/{tenant_id}/keys", headers=ADMIN).json()
    key = {"Authorization": f"Bearer {made['key']}"}
    codes = [client.post(f"/config/{tenant_id}", headers=key,
                         json={"config": {"top_k": 1 + n % 5}}).status_code for n in range(15)]
    assert codes == [200] * 10 + [429] * 5
    assert app.state.ctx.limiter.counters.errors > 0  # Redis was asked, and failed
    wrong = {"Authorization": "Bearer m11k_0000_wrong"}
    assert [client.get(f"/config/{tenant_id}", headers=wrong).status_code
            for _ in range(4)] == [401] * 3 + [429]
