"""The practathon checks: the reference solutions pass, the starting points do not."""

from __future__ import annotations

import time
from datetime import datetime

from m11_tenant.practathon import (
    RetryBackoffConfig,
    check_replication,
    check_retry_field,
    check_safe_update,
    quality_probe,
    reference_replicate,
    reference_safe_update,
)
from m11_tenant.schema import TenantConfig
from m11_tenant.workbook import open_sandbox


def test_retry_field_check():
    class Missing(TenantConfig):
        pass

    assert check_retry_field(RetryBackoffConfig).passed
    report = check_retry_field(Missing)
    assert not report.passed
    assert str(report).splitlines()[1] == "  ✗ Missing declares retry_backoff_s"


def test_retry_field_check_catches_a_missing_bound():
    from pydantic import Field

    class Unbounded(TenantConfig):
        retry_backoff_s: float = Field(1.0, ge=0.0)

    failed = [text for text, ok in check_retry_field(Unbounded).results if not ok]
    assert failed == ["an absurdly large value (1,000,000) is refused"]


def test_safe_update_check():
    def naive(repo, tenant_id, updates, probe, *, actor="system"):
        return repo.update_config(tenant_id, updates, actor=actor)

    assert check_safe_update(reference_safe_update).passed
    assert not check_safe_update(naive).passed


def test_reference_safe_update_on_a_new_tenant_goes_back_to_defaults(sqlite_repo, tenant_id):
    record = reference_safe_update(sqlite_repo, tenant_id, {"top_k": 1}, quality_probe)
    assert record.version == 0 and record.source in {"database", "defaults"}


def test_replication_check():
    def nothing(regions):
        return None

    def copy_without_lww(regions):  # copies in name order: the first region's config wins
        for tenant_id in sorted({t for r in regions.values() for t in r.list_tenants()}):
            first = next(r for r in regions.values() if r.get_record(tenant_id).version)
            for repo in regions.values():
                repo.update_config(tenant_id, first.get_config(tenant_id), merge=False)

    def lww_timed_by_the_wall_clock(regions):  # copies right, but measures its own time
        started = time.monotonic()
        reference_replicate(regions)
        return dict.fromkeys(regions, time.monotonic() - started)

    assert check_replication(reference_replicate).passed
    assert not check_replication(nothing).passed
    assert not check_replication(copy_without_lww).passed
    wall = check_replication(lww_timed_by_the_wall_clock)
    assert [ok for _, ok in wall.results] == [True, True, True, True, False, False]


def test_the_reference_reports_the_lag_of_each_copy():
    box = open_sandbox(seed=False)
    try:
        regions = {name: box.open_repository(database="own", redis="own")
                   for name in ("ap", "eu", "us")}
        written = regions["us"].update_config("acme", {"top_k": 4}).updated_at
        lags = reference_replicate(regions)
        copied = {name: regions[name].get_record("acme").updated_at for name in ("ap", "eu")}
        assert lags["us"] == 0.0  # the source itself received nothing
        for name, at in copied.items():  # one step of the sandbox clock (a minute) or more
            seconds = (datetime.fromisoformat(at) - datetime.fromisoformat(written))
            assert lags[name] == seconds.total_seconds() >= 60
        assert reference_replicate(regions) == dict.fromkeys(regions, 0.0)
    finally:
        box.close()


def test_quality_probe():
    assert quality_probe(TenantConfig()) == []
    assert len(quality_probe(TenantConfig(top_k=1, temperature=1.9))) == 2


# ---- the module's easy task: field, example data, a test that can fail ----------------------
def test_example_data_check_wants_the_field_in_use_and_everything_valid():
    from m11_tenant.practathon import check_example_data, example_configs

    examples = example_configs()
    assert not check_example_data(RetryBackoffConfig, examples).passed
    examples["startup-co"]["retry_backoff_s"] = 2.5
    assert check_example_data(RetryBackoffConfig, examples).passed
    examples["edu-free"]["retry_backoff_s"] = -1
    assert not check_example_data(RetryBackoffConfig, examples).passed


def test_field_test_check_rejects_a_test_that_cannot_fail():
    from m11_tenant.practathon import check_field_test, reference_field_test

    assert check_field_test(reference_field_test).passed
    report = check_field_test(lambda config_cls: None)
    assert [ok for _, ok in report.results] == [True, False, False, False, False, False]

    def only_the_field_exists(config_cls):
        assert "retry_backoff_s" in config_cls.model_fields

    failed = [text for text, ok in check_field_test(only_the_field_exists).results if not ok]
    assert "it fails on no upper bound" in failed and "it fails on no field at all" not in failed


# ---- the module's medium task: versioning, keep 10, rollback as a new version, endpoint --------
def test_versioning_check_passes_the_reference_and_catches_unbounded_history():
    from m11_tenant.practathon import ReferenceVersions, check_versioning

    assert check_versioning(ReferenceVersions).passed

    class KeepsEverything(ReferenceVersions):
        def __init__(self, keep=10):
            super().__init__(keep=10_000)

    failed = [text for text, ok in check_versioning(KeepsEverything).results if not ok]
    assert failed == ["only the last 10 versions are kept (3 to 12 after 12 saves)",
                      "rolling back to a version no longer kept raises ConfigNotFoundError"]
    assert not check_versioning(object).passed  # the starting point: nothing implemented


def test_rollback_endpoint_check():
    from fastapi import FastAPI

    from m11_tenant.practathon import check_rollback_endpoint, reference_rollback_app

    assert check_rollback_endpoint(reference_rollback_app).passed
    assert not check_rollback_endpoint(lambda versions: FastAPI()).passed
