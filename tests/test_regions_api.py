"""The management API served by one region, with replication lag on its /metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from m11_tenant.api import ApiSettings, create_app
from m11_tenant.regions import ManualClock, open_cluster
from m11_tenant.regions.metrics import ReplicationCollector

ADMIN = {"Authorization": "Bearer m11a_regions-admin-key-0123456789-abcdefXYZ"}


def test_a_region_behind_the_api_replicates_and_reports_its_lag(tmp_path, tenant_id):
    clock = ManualClock()
    cluster = open_cluster(["us", "eu", "ap"], base_dir=tmp_path, clock_ms=clock,
                           lag_alert_ms=1_000)
    settings = ApiSettings(m11_admin_key=ADMIN["Authorization"].removeprefix("Bearer "))
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
