"""Regions end to end: writes replicate, partitions heal and converge, nothing is lost
across restarts or Redis outages, lag is measured. Runs on fakeredis, and on the real
Redis named by M11_TEST_REDIS_URL when it is set (unreachable then is a failure)."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m11_tenant.cache import make_redis_client
from m11_tenant.errors import ConfigValidationError
from m11_tenant.regions import LagMonitor, ManualClock, open_cluster
from tests.conftest import REAL_DATABASE_URL, REAL_REDIS_URL

# (transport, stores): every backend this run can reach; real ones fail, never skip.
BACKENDS = [("fakeredis", "sqlite")] + ([("redis", "sqlite")] if REAL_REDIS_URL else []) + (
    [("redis" if REAL_REDIS_URL else "fakeredis", "postgresql")] if REAL_DATABASE_URL else [])


class Harness:
    """Opens (and reopens) clusters on one Redis, one set of stores and one key namespace."""

    def __init__(self, client, base_dir: Path, database_url: str | None):
        self.client, self.base_dir, self.database_url = client, base_dir, database_url
        suffix = uuid.uuid4().hex[:10]
        self.namespace, self.schema_prefix = f"test-regions-{suffix}", f"m11_test_{suffix}"
        self.clock = ManualClock()
        self.opened = []

    def open(self, strategy="field-merge", regions=("us", "eu", "ap"), **kwargs):
        cluster = open_cluster(list(regions), strategy, redis_client=self.client,
                               base_dir=self.base_dir, database_url=self.database_url,
                               schema_prefix=self.schema_prefix, namespace=self.namespace,
                               clock_ms=self.clock, **kwargs)
        self.opened.append(cluster)
        return cluster

    def cleanup(self):
        for cluster in self.opened:
            cluster.close()
        for key in self.client.scan_iter(match=f"{self.namespace}*"):
            self.client.delete(key)
        if self.database_url:
            from m11_tenant.regions.postgres import drop_region_schemas

            drop_region_schemas(self.database_url, self.schema_prefix, ["us", "eu", "ap"])


@pytest.fixture(params=BACKENDS, ids="-".join)
def harness(request, tmp_path):
    transport, stores = request.param
    if transport == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = make_redis_client(REAL_REDIS_URL)
        client.ping()  # unreachable in CI -> the test errors out instead of skipping
    h = Harness(client, tmp_path, REAL_DATABASE_URL if stores == "postgresql" else None)
    yield h
    h.cleanup()


def stored(cluster, tenant, *fields):
    """One tuple per region of the given fields of the tenant's stored config."""
    return {name: tuple(cluster.configs(name)[tenant][f] for f in fields)
            for name in cluster.names}


def test_a_write_in_one_region_is_served_by_every_region(harness, tenant_id):
    cluster = harness.open()
    cluster.region("us").update_config(tenant_id, {"temperature": 0.2}, actor="alice")
    assert cluster.region("eu").get_config(tenant_id).temperature == 0.7  # not there yet
    harness.clock.advance(40)
    assert cluster.sync() == 2
    for name in cluster.names:
        repo = cluster.region(name)
        assert repo.get_config(tenant_id).temperature == 0.2
        assert repo.list_tenants() == [tenant_id]
    audit = cluster.region("eu").get_audit_log(tenant_id)[0]
    assert (audit.actor, audit.action) == ("replication:us", "replicate")
    assert cluster.lag()["us->eu"].p50_ms == 40.0


def test_a_replicated_change_replaces_the_regions_cached_copy(harness, tenant_id):
    cluster = harness.open()
    cluster.region("us").update_config(tenant_id, {"top_k": 4})
    cluster.sync()
    eu = cluster.region("eu")
    assert eu.get_config(tenant_id).top_k == 4
    assert eu.get_record(tenant_id).source == "cache"
    cluster.region("us").update_config(tenant_id, {"top_k": 6})
    cluster.sync()
    record = eu.get_record(tenant_id)
    assert (record.config.top_k, record.source) == (6, "database")


@pytest.mark.parametrize("strategy", ["field-merge", "lww"])
def test_partition_conflicting_writes_then_heal_converges(harness, tenant_id, strategy):
    cluster = harness.open(strategy)
    us, eu = cluster.region("us"), cluster.region("eu")
    us.update_config(tenant_id, {"temperature": 0.5, "top_k": 5, "alpha": 0.5})
    cluster.sync()
    cluster.partition("eu")
    harness.clock.advance(100)
    us.update_config(tenant_id, {"temperature": 0.2, "alpha": 0.1})  # older
    harness.clock.advance(100)
    eu.update_config(tenant_id, {"top_k": 9, "alpha": 0.9})  # newer
    cluster.sync()
    assert eu.get_config(tenant_id).temperature == 0.5  # eu sees nothing while cut off
    assert cluster.region("ap").get_config(tenant_id).top_k == 5
    cluster.heal("eu")
    cluster.sync()
    assert cluster.converged()
    expected = (0.2, 9, 0.9) if strategy == "field-merge" else (0.5, 9, 0.9)
    assert set(stored(cluster, tenant_id, "temperature", "top_k", "alpha").values()) == {expected}
    conflicts = cluster.conflicts()
    fields = {c.field for c in conflicts}
    assert fields == ({"alpha"} if strategy == "field-merge" else {"*"})
    assert {(c.winner.origin, c.loser.origin) for c in conflicts} == {("eu", "us")}


def test_while_cut_off_the_backlog_grows_and_the_alert_fires(harness, tenant_id):
    cluster = harness.open(lag_alert_ms=1_000)
    cluster.partition("eu")
    for n in range(3):
        cluster.region("us").update_config(tenant_id, {"top_k": n + 1})
    cluster.region("eu").update_config(tenant_id, {"alpha": 0.3})
    cluster.sync()
    harness.clock.advance(2_500)
    lag = cluster.lag()
    assert (lag["us->eu"].backlog, lag["us->ap"].backlog) == (3, 0)
    assert (lag["eu->us"].backlog, lag["eu->ap"].backlog) == (1, 1)  # still in eu's outbox
    assert lag["us->eu"].oldest_unapplied_ms == 2_500.0
    assert {(p.source, p.target) for p in cluster.alerts()} == {
        ("us", "eu"), ("eu", "us"), ("eu", "ap")}
    cluster.lag_alert_ms = 10_000
    assert cluster.alerts() == []
    cluster.heal("eu")
    cluster.sync()
    assert all(p.backlog == 0 for p in cluster.lag().values())
    assert cluster.lag()["us->eu"].max_ms == 2_500.0
    assert cluster.converged()
    text = cluster.metrics_text()
    assert 'm11_replication_backlog{source="us",target="eu"} 0.0' in text
    assert 'm11_replication_lag_ms{quantile="0.95",source="us",target="eu"} 2500.0' in text
    assert "m11_replication_lag_alert_threshold_ms 10000.0" in text
    with pytest.raises(ConfigValidationError, match="alert threshold must be >= 0"):
        cluster.lag_alert_ms = -1


@pytest.mark.parametrize("strategy", ["field-merge", "lww"])
def test_a_delete_replicates_as_a_tombstone(harness, tenant_id, strategy):
    cluster = harness.open(strategy)
    cluster.region("us").update_config(tenant_id, {"temperature": 0.2})
    cluster.sync()
    cluster.partition("ap")
    cluster.region("eu").delete_config(tenant_id)
    harness.clock.advance(10)
    cluster.region("ap").update_config(tenant_id, {"top_k": 3})  # newer than the delete
    cluster.sync()
    assert cluster.region("us").list_tenants() == []
    cluster.heal("ap")
    cluster.sync()
    assert cluster.converged()
    config = cluster.configs("us")[tenant_id]
    expected_temperature = 0.7 if strategy == "field-merge" else 0.2  # lww: ap's whole config
    assert (config["top_k"], config["temperature"]) == (3, expected_temperature)
    cluster.region("us").delete_config(tenant_id)
    cluster.sync()
    assert [cluster.region(name).list_tenants() for name in cluster.names] == [[], [], []]


def test_entries_read_but_not_acknowledged_are_applied_after_a_restart(harness, tenant_id):
    cluster = harness.open()
    cluster.sync()  # eu is up and running
    cluster.region("us").update_config(tenant_id, {"temperature": 0.3})
    [delivery] = cluster.transport.read("eu")  # eu took it, then died before applying
    assert delivery.event.tenant_id == tenant_id
    cluster.sync()
    assert cluster.region("eu").get_config(tenant_id).temperature == 0.7  # still pending
    assert cluster.lag()["us->eu"].backlog == 1
    cluster.restart("eu")
    cluster.sync()
    assert cluster.region("eu").get_config(tenant_id).temperature == 0.3
    assert cluster.lag()["us->eu"].backlog == 0


def test_a_region_that_was_down_catches_up_and_its_own_writes_are_not_lost(harness, tenant_id):
    cluster = harness.open()
    cluster.partition("eu")
    cluster.region("eu").update_config(tenant_id, {"alpha": 0.2})  # committed, never sent
    for n in range(5):
        cluster.region("us").update_config(tenant_id, {"top_k": n + 1})
    cluster.sync()
    cluster.close()  # every process stops
    reopened = harness.open()
    assert reopened.region("eu").get_config(tenant_id).alpha == 0.2  # its file kept it
    reopened.sync()
    assert reopened.converged()
    assert stored(reopened, tenant_id, "top_k", "alpha")["ap"] == (5, 0.2)
    # Its clock resumed after what it had stored: a new write wins over all of the above.
    reopened.region("eu").update_config(tenant_id, {"top_k": 20})
    reopened.sync()
    assert set(stored(reopened, tenant_id, "top_k").values()) == {(20,)}


def test_a_duplicated_event_changes_nothing(harness, tenant_id):
    cluster = harness.open()
    cluster.region("us").update_config(tenant_id, {"temperature": 0.2})
    cluster.region("us").update_config(tenant_id, {"temperature": 0.4})
    first = cluster.transport.read("eu")[0].event  # a copy of the first event
    cluster.sync()
    versions = {name: cluster.region(name).get_record(tenant_id).version for name in cluster.names}
    cluster.transport.publish(first)  # delivered again, late and out of order
    assert cluster.sync() == 2
    assert {name: cluster.region(name).get_record(tenant_id).version
            for name in cluster.names} == versions
    assert set(stored(cluster, tenant_id, "temperature").values()) == {(0.4,)}


def test_streams_keep_only_what_some_region_still_needs(harness, tenant_id):
    cluster = harness.open()
    cluster.partition("ap")
    cluster.region("us").update_config(tenant_id, {"top_k": 2})
    cluster.sync()
    assert cluster.transport.stream_lengths()["us"] == 1  # ap has not had it yet
    cluster.heal("ap")
    cluster.sync()
    assert cluster.transport.stream_lengths() == {"us": 0, "eu": 0, "ap": 0}


def test_stats_report_replication_per_region(harness, tenant_id):
    cluster = harness.open()
    cluster.region("us").update_config(tenant_id, {"top_k": 2})
    cluster.sync()
    replication = cluster.region("eu").get_stats()["replication"]
    assert set(replication.pop("lag")) == {"us->eu", "ap->eu"}
    assert replication.pop("apply_seconds") > 0
    assert replication == {"region": "eu", "strategy": "field-merge", "connected": True,
                           "applied": 1, "outbox": 0, "publish_errors": 0,
                           "transport_errors": 0, "apply_errors": 0, "last_error": None,
                           "conflicts": 0}
    assert set(cluster.stats()["lag"]) == {"us->eu", "us->ap", "eu->us", "eu->ap", "ap->us",
                                          "ap->eu"}


def test_writes_commit_while_redis_is_down_and_are_sent_when_it_is_back(tmp_path, tenant_id):
    server = fakeredis.FakeServer()
    cluster = open_cluster(["us", "eu"], redis_client=fakeredis.FakeRedis(server=server),
                           base_dir=tmp_path)
    server.connected = False
    record = cluster.region("us").update_config(tenant_id, {"temperature": 0.1})
    assert record.version == 1  # acknowledged: the write is committed
    replication = cluster.region("us").get_stats()["replication"]
    assert replication["outbox"] == 1 and "Redis is unreachable" in replication["lag_error"]
    server.connected = True
    cluster.sync()
    assert cluster.region("eu").get_config(tenant_id).temperature == 0.1
    cluster.close()


def test_background_apply_loops_survive_a_redis_outage(tmp_path, tenant_id):
    server = fakeredis.FakeServer()
    cluster = open_cluster(["us", "eu"], redis_client=fakeredis.FakeRedis(server=server),
                           base_dir=tmp_path)
    server.connected = False
    cluster.start(block_ms=5)
    try:
        cluster.region("us").update_config(tenant_id, {"top_k": 3})  # committed, not sent
        deadline = time.monotonic() + 10
        while cluster.regions["eu"].transport_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.connected = True
        while cluster.region("eu").get_config(tenant_id).top_k != 3 \
                and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        cluster.stop()
    assert cluster.regions["eu"].transport_errors > 0
    assert cluster.region("eu").get_config(tenant_id).top_k == 3
    cluster.close()


def test_background_apply_loops_replicate_without_sync(tmp_path, tenant_id):
    cluster = open_cluster(["us", "eu", "ap"], base_dir=tmp_path)
    cluster.start(block_ms=5)
    cluster.start()  # already running: nothing more
    try:
        for n in range(20):
            cluster.region(["us", "eu", "ap"][n % 3]).update_config(tenant_id, {"top_k": n + 1})
    finally:
        cluster.stop()
    cluster.sync()  # whatever the loops had not done yet
    assert cluster.converged()
    assert set(stored(cluster, tenant_id, "top_k").values()) == {(20,)}
    cluster.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"regions": ["us"]}, "two or more distinct"),
    ({"regions": ["us", "us"]}, "two or more distinct"),
    ({"regions": ["us", "EU"]}, "region name 'EU' is not valid"),
    ({"regions": ["us", "eu"], "strategy": "newest"}, "unknown strategy 'newest'"),
    ({"regions": ["us", "eu"], "redis_url": ""}, "regions replicate over Redis Streams"),
])
def test_open_cluster_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ConfigValidationError, match=message):
        open_cluster(base_dir=tmp_path, **kwargs)


def test_asking_for_an_unknown_region_names_the_ones_there_are(tmp_path):
    cluster = open_cluster(["us", "eu"], base_dir=tmp_path)
    with pytest.raises(ConfigValidationError, match="unknown region 'ap'; this cluster has: us, eu"):
        cluster.region("ap")
    cluster.close()


# ---------------------------------------------------------------------------- property

REGIONS = ["us", "eu", "ap"]
step = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(REGIONS), st.sampled_from(["t-one", "t-two"]),
              st.sampled_from(["temperature", "top_k", "alpha"]), st.integers(0, 3)),
    st.tuples(st.just("delete"), st.sampled_from(REGIONS), st.sampled_from(["t-one", "t-two"])),
    st.tuples(st.just("partition"), st.sampled_from(REGIONS)),
    st.tuples(st.just("heal"), st.sampled_from(REGIONS)),
    st.tuples(st.just("sync")),
    st.tuples(st.just("tick"), st.integers(0, 50)),
)
VALUES = {"temperature": [0.1, 0.4, 0.9, 1.5], "top_k": [1, 4, 8, 12],
          "alpha": [0.0, 0.25, 0.5, 1.0]}


@pytest.mark.parametrize("strategy", ["field-merge", "lww"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=25))
def test_random_writes_partitions_and_heals_converge(strategy, steps):
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as base_dir:
        cluster = open_cluster(REGIONS, strategy, base_dir=base_dir, clock_ms=clock)
        try:
            for action, *args in steps:
                if action == "write":
                    region, tenant, field, index = args
                    cluster.region(region).update_config(tenant, {field: VALUES[field][index]})
                elif action == "delete":
                    region, tenant = args
                    if tenant in cluster.region(region).list_tenants():
                        cluster.region(region).delete_config(tenant)
                elif action == "partition":
                    cluster.partition(args[0])
                elif action == "heal":
                    cluster.heal(args[0])
                elif action == "sync":
                    cluster.sync()
                else:
                    clock.advance(args[0])
            for region in REGIONS:
                cluster.heal(region)
            cluster.sync()
            assert cluster.converged()
            assert all(p.backlog == 0 for p in cluster.lag().values())
        finally:
            cluster.close()


def test_clock_stamps_commit_with_the_config_or_not_at_all(tmp_path, tenant_id, monkeypatch):
    cluster = open_cluster(["us", "eu"], base_dir=tmp_path)
    us = cluster.region("us")
    us.update_config(tenant_id, {"top_k": 2})

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full while writing the replica state")

    monkeypatch.setattr(type(us.store), "_save", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        us.update_config(tenant_id, {"top_k": 7})
    monkeypatch.undo()
    assert us.get_record(tenant_id).version == 1 and us.get_config(tenant_id).top_k == 2
    assert us.replica_state(tenant_id).fields["top_k"].value == 2
    cluster.sync()
    assert cluster.region("eu").get_config(tenant_id).top_k == 2  # the failed write never left
    cluster.close()


def test_a_rollback_replicates_like_any_write(harness, tenant_id):
    cluster = harness.open()
    us = cluster.region("us")
    us.update_config(tenant_id, {"top_k": 2})
    us.update_config(tenant_id, {"top_k": 7, "alpha": 0.9})
    cluster.sync()
    us.rollback(tenant_id, 1, actor="ops")
    cluster.sync()
    assert set(stored(cluster, tenant_id, "top_k", "alpha").values()) == {(2, 0.5)}


def test_a_region_reports_the_lag_into_it_to_prometheus(harness, tenant_id):
    from prometheus_client import CollectorRegistry, generate_latest

    from m11_tenant.regions.metrics import ReplicationCollector

    cluster = harness.open(lag_alert_ms=100)
    cluster.partition("eu")
    cluster.region("us").update_config(tenant_id, {"top_k": 2})
    harness.clock.advance(300)
    registry = CollectorRegistry()  # what the API's /metrics registry does
    registry.register(ReplicationCollector(cluster.region("eu")))
    text = generate_latest(registry).decode()
    assert 'm11_replication_backlog{source="us",target="eu"} 1.0' in text
    assert 'm11_replication_oldest_unapplied_ms{source="us",target="eu"} 300.0' in text
    assert 'm11_replication_lag_alert{source="us",target="eu"} 1.0' in text
    assert 'target="us"' not in text  # a region reports only what comes into it


def test_changes_read_together_are_folded_into_one_write(harness, tenant_id):
    cluster = harness.open()
    cluster.partition("eu")
    for n in range(5):
        cluster.region("us").update_config(tenant_id, {"top_k": n + 1})
    cluster.heal("eu")
    assert cluster.sync() == 5 + 5  # eu and ap each read the five in one batch
    for name in ("eu", "ap"):
        record = cluster.region(name).get_record(tenant_id)
        assert (record.version, record.config.top_k) == (1, 5)
    eu = cluster.region("eu")
    assert eu.get_audit_log(tenant_id)[0].reason.startswith("5 change(s) from region us")
    assert cluster.lag()["us->eu"].samples == 5  # each change still counts for lag


def test_the_lag_alert_clears_once_the_slow_changes_leave_its_time_window():
    monitor = LagMonitor(alert_ms=5_000, alert_window_ms=60_000)
    monitor.record("us", "eu", 7_000, at_ms=1_000)  # caught up after a 7 s outage
    assert monitor.summary("us", "eu", now_ms=2_000).alert
    later = monitor.summary("us", "eu", now_ms=61_001)
    assert not later.alert and later.p95_ms == 7_000  # the figures keep the sample
    assert monitor.summary("us", "eu", oldest_unapplied_ms=5_001, now_ms=61_001).alert
