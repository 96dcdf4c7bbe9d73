"""The management API served by one region, with replication lag on its /metrics."""

from __future__ import annotations

import time

import fakeredis
from fastapi.testclient import TestClient

from m11_tenant.app import create_app
from m11_tenant.regions import ManualClock, open_cluster
from m11_tenant.regions.metrics import RegionStateCollector, ReplicationCollector
from m11_tenant.settings import Settings

ADMIN = {"Authorization": "Bearer m11a_regions-admin-key-0123456789-abcdefXYZ"}


def test_a_region_behind_the_api_replicates_and_reports_its_lag(tmp_path, tenant_id):
    clock = ManualClock()
    cluster = open_cluster(["us", "eu", "ap"], base_dir=tmp_path, clock_ms=clock,
                           lag_alert_ms=1_000)
    settings = Settings(m11_admin_key=ADMIN["Authorization"].removeprefix("Bearer "))
    us_app = create_app(cluster.region("us"), settings=settings)
    eu_app = create_app(cluster.region("eu"), settings=settings)
    # The hook: the API's /metrics reads its app registry; the region's collector joins it.
    eu_app.state.metrics.registry.register(ReplicationCollector(cluster.region("eu")))
    us_api, eu_api = TestClient(us_app), TestClient(eu_app)

    written = us_api.post(f"/config/{tenant_id}", headers=ADMIN,
                          json={"config": {"top_k": 3}})
    assert written.status_code == 200, written.text
    cluster.partition("eu")
    us_api.post(f"/config/{tenant_id}", headers=ADMIN, json={"config": {"top_k": 4}})
    clock.advance(1_500)
    cluster.sync()
    metrics = eu_api.get("/metrics", headers=ADMIN).text
    assert 'm11_replication_backlog{source="us",target="eu"} 2.0' in metrics
    assert 'm11_replication_lag_alert{source="us",target="eu"} 1.0' in metrics
    assert "m11_config_load_seconds" in metrics  # the API's own metrics are still there

    cluster.heal("eu")
    cluster.sync()
    served = eu_api.get(f"/config/{tenant_id}", headers=ADMIN)
    assert served.status_code == 200 and served.json()["config"]["top_k"] == 4
    metrics = eu_api.get("/metrics", headers=ADMIN).text
    assert 'm11_replication_backlog{source="us",target="eu"} 0.0' in metrics
    assert 'm11_replication_lag_ms{quantile="1",source="us",target="eu"} 1500.0' in metrics
    cluster.close()


def test_a_region_reports_replication_in_health_and_keeps_metrics_up_without_redis(
        tmp_path, tenant_id):
    clock, server = ManualClock(), fakeredis.FakeServer()
    cluster = open_cluster(["us", "eu"], base_dir=tmp_path, clock_ms=clock, lag_alert_ms=1_000,
                           redis_client=fakeredis.FakeRedis(server=server))
    settings = Settings(m11_admin_key=ADMIN["Authorization"].removeprefix("Bearer "))
    app = create_app(cluster.region("eu"), settings=settings)
    app.state.metrics.registry.register(ReplicationCollector(cluster.region("eu")))
    app.state.metrics.registry.register(RegionStateCollector(cluster.region("eu")))
    api = TestClient(app)

    anonymous = api.get("/health").json()
    assert anonymous["services"]["replication"] == "ok" and "detail" not in anonymous
    detail = api.get("/health/detail", headers=ADMIN).json()["detail"]["replication"]
    assert detail["region"] == "eu" and set(detail["lag"]) == {"us->eu"}
    assert api.get("/health/detail", headers={"Authorization": "Bearer wrong"}).status_code == 401

    cluster.partition("eu")
    cluster.region("us").update_config(tenant_id, {"top_k": 3})
    cluster.sync()
    clock.advance(1_500)
    assert api.get("/health").json() == {
        "status": "degraded", "services": {"database": "ok", "cache": "ok", "subscription": "ok",
                                           "replication": "degraded"}}
    health = api.get("/health/detail", headers=ADMIN).json()
    assert health["services"]["replication"] == "degraded: lag above 1000 ms on us->eu"

    server.connected = False  # the streams' Redis goes away: health and /metrics still answer
    health = api.get("/health/detail", headers=ADMIN).json()
    assert health["services"]["replication"].startswith("down: the change streams")
    mine = f"{health['services']['replication']} {health['detail']}"
    assert "redis://" not in mine and "Error" not in mine  # nothing about hosts or drivers
    metrics = api.get("/metrics", headers=ADMIN)
    assert metrics.status_code == 200
    assert "m11_replication_streams_up 0.0" in metrics.text
    assert "m11_replication_outbox 0.0" in metrics.text  # eu wrote nothing itself
    server.connected = True
    cluster.heal("eu")
    cluster.sync()
    assert "m11_replication_applied_total 1.0" in api.get("/metrics", headers=ADMIN).text
    cluster.close()


def test_the_apply_loop_recreates_the_groups_when_redis_lost_its_data(tmp_path, tenant_id):
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())  # private to this test
    cluster = open_cluster(["us", "eu"], base_dir=tmp_path, redis_client=client)
    cluster.start(block_ms=5)
    us, eu = cluster.region("us"), cluster.region("eu")
    us.update_config(tenant_id, {"top_k": 3})
    _wait_for(lambda: eu.get_config(tenant_id).top_k == 3)
    client.flushall()  # streams and consumer groups gone (a Redis without persistence)
    us.update_config(tenant_id, {"top_k": 4})
    _wait_for(lambda: eu.get_config(tenant_id).top_k == 4)
    assert cluster.regions["eu"].apply_errors >= 1  # it saw NOGROUP, and carried on
    cluster.close()


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the apply loop did not catch up"
        time.sleep(0.01)
