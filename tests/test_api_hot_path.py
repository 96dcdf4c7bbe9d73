"""GET /config's hot path: a known caller's near-cache hit, answered before routing.

It must answer exactly what the full path answers (body, ETag, metrics), never serve a
stale version after a write, and never let a caller through that the full path refuses.
"""

from __future__ import annotations

import json

import fakeredis
import pytest
from api_support import ADMIN, ADMIN_KEY
from fastapi.testclient import TestClient

from m11_tenant import open_repository
from m11_tenant.api.fastpath import ConfigFastPath
from m11_tenant.app import create_app
from m11_tenant.settings import Settings


def fast_path(app) -> ConfigFastPath:
    """The app's fast-path middleware (Starlette builds the stack on the first request)."""
    layer = app.middleware_stack
    while not isinstance(layer, ConfigFastPath):
        layer = layer.app
    return layer


@pytest.fixture
def near_api(database_url):
    repo = open_repository(database_url, redis_client=fakeredis.FakeRedis(
        server=fakeredis.FakeServer()), warm_start=False)
    assert repo.near is not None
    app = create_app(repo, settings=Settings(m11_admin_key=ADMIN_KEY))
    yield TestClient(app, raise_server_exceptions=False), repo, app
    repo.close()


def test_a_near_hit_answers_what_the_full_path_answers(near_api, tenant_id):
    client, repo, app = near_api
    client.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {"top_k": 4}})
    first = client.get(f"/config/{tenant_id}", headers=ADMIN)  # full path: fills the near cache
    hit = client.get(f"/config/{tenant_id}", headers=ADMIN)
    again = client.get(f"/config/{tenant_id}", headers=ADMIN)  # the reused body
    assert first.json()["source"] != "near" and hit.json()["source"] == "near"
    for response in (hit, again):
        assert response.status_code == 200 and response.headers["etag"] == '"1"'
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body == {**first.json(), "source": "near"}
    assert again.content == hit.content
    assert tenant_id in fast_path(app).answers  # only the hot path keeps bodies
    assert json.loads(hit.content)["config"]["top_k"] == 4
    near_loads = app.state.metrics.registry.get_sample_value(
        "m11_config_load_seconds_count", {"source": "near"})
    assert near_loads == 2
    assert repo.get_stats()["sources"]["near"] == 2  # counted exactly


def test_a_write_is_seen_at_once_not_the_cached_body(near_api, tenant_id):
    client, _repo, _app = near_api
    client.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {"top_k": 4}})
    for _ in range(2):
        client.get(f"/config/{tenant_id}", headers=ADMIN)
    client.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {"top_k": 6}})
    for _ in range(2):  # the full path after the write, then a near hit on the new version
        response = client.get(f"/config/{tenant_id}", headers=ADMIN)
        assert response.headers["etag"] == '"2"' and response.json()["config"]["top_k"] == 6


def test_tenant_keys_on_the_hot_path(near_api, tenant_id):
    client, repo, _app = near_api
    other = f"{tenant_id}-b"
    for tid in (tenant_id, other):
        client.post(f"/config/{tid}", headers=ADMIN, json={"config": {}})
        client.get(f"/config/{tid}", headers=ADMIN)  # both near-cached now
    key = client.post(f"/tenants/{tenant_id}/keys", headers=ADMIN).json()["key"]
    mine = {"Authorization": f"Bearer {key}"}
    for _ in range(2):  # the first call looks the key up; the second is a known caller
        response = client.get(f"/config/{tenant_id}", headers=mine)
        assert response.status_code == 200
    assert response.json()["source"] == "near"
    refused = client.get(f"/config/{other}", headers=mine)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # Audited as on the full path (under the caller's own tenant since the hardening work).
    assert repo.get_audit_log(tenant_id)[0].action == "denied"


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer not-a-key"}, 401),
    ({"Authorization": f"Basic {ADMIN_KEY}"}, 401),
])
def test_no_hot_path_without_a_valid_key(near_api, tenant_id, headers, status):
    client, _repo, _app = near_api
    client.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {}})
    client.get(f"/config/{tenant_id}", headers=ADMIN)
    assert client.get(f"/config/{tenant_id}", headers=headers).status_code == status


def test_a_bad_tenant_id_is_still_a_400(near_api):
    client, _repo, _app = near_api
    response = client.get("/config/Bad%20Id", headers=ADMIN)
    assert response.status_code == 400


def test_the_hot_path_sends_the_full_paths_headers(near_api, tenant_id):
    client, _repo, _app = near_api
    client.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {}})
    full = client.get(f"/config/{tenant_id}", headers=ADMIN)
    hit = client.get(f"/config/{tenant_id}", headers=ADMIN)
    assert full.json()["source"] != "near" and hit.json()["source"] == "near"
    assert hit.headers["content-length"] == str(len(hit.content))
    assert [(k, v) for k, v in hit.headers.multi_items() if k != "content-length"] == \
        [(k, v) for k, v in full.headers.multi_items() if k != "content-length"]
