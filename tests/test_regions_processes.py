"""Regions as processes: `serve --region` on loopback, SIGKILL of a region and of Redis.

These start real processes: three region servers and a private `redis-server` (Debian's
binary; never the shared Redis). A real Redis is required across processes -- fakeredis
lives inside one -- so they are marked ``redis_server``: collected whenever `redis-server`
is on PATH (this machine, CI), deselected with a note when it is not, and a failure when
``M11_REQUIRE_SERVICES`` is set. The PostgreSQL variant is marked ``services``.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
import uvicorn

from m11_tenant.cli import main
from m11_tenant.regions.loopback import LoopbackRegions
from tests.region_processes import REGIONS, VICTIM, lag_settled, owners_for, run_drill

# Whole history per tenant: the drill reads it to find events applied twice. The alert
# looks at the last 2 s of applies (60 s by default), so the test need not wait a minute to
# see it clear after the victim's catch-up.
DRILL_ENV = {"HISTORY_LIMIT": "1000", "M11_REGION_LAG_ALERT_WINDOW_S": "2"}
REAL_DATABASE_URL = os.environ.get("M11_TEST_DATABASE_URL")


def _drill(tmp_path, strategy: str, database_urls=None) -> None:
    with LoopbackRegions(REGIONS, tmp_path, strategy=strategy, database_urls=database_urls,
                         env=DRILL_ENV) as regions:
        report = run_drill(regions, owners_for(strategy))
        started = time.monotonic()
        settled = lag_settled(regions)
        settle_s = time.monotonic() - started
    print(f"\n{strategy}: {report.acknowledged} writes acknowledged "
          f"({report.acked_before_kill} before the kill, {report.acked_after_redis_restart} "
          f"after the Redis restart), {report.lost} lost, "
          f"{report.unknown} without a reply (killed in flight), {report.refused_retried} "
          f"refused and retried; {VICTIM} down {report.victim_down_s:.1f} s; converged "
          f"{report.converged_after_burst_s:.1f} s after the last write, "
          f"{report.converged_after_restart_s:.1f} s after {VICTIM}'s restart; backlogs 0 "
          f"and no lag alert {settle_s:.1f} s after converging")
    # The burst spanned both faults: writes were acknowledged before the kill and after
    # Redis came back (and, by then, every region was up again).
    assert report.acked_before_kill > 0 and report.acked_after_redis_restart > 0, report
    assert report.lost == 0
    for name, state in settled.items():
        assert set(state["alerts"]) == {f"{s}->{name}" for s in REGIONS if s != name}
        assert not any(state["alerts"].values()), (name, state)
        assert not any(state["backlog"].values()), (name, state)
        replication = state["health"]["detail"]["replication"]
        assert state["health"]["services"]["replication"] == "ok", replication
        assert replication["outbox"] == 0 and replication["region"] == name
    # The victim replayed what it was given but had not acknowledged, and the Redis
    # restart was seen by every region, yet nothing was lost or reverted (checked above).
    assert settled[VICTIM]["health"]["detail"]["replication"]["applied"] > 0


@pytest.mark.redis_server
@pytest.mark.parametrize("strategy", ["field-merge", "lww"])
def test_regions_survive_kill_9_of_a_region_and_of_redis(tmp_path, strategy):
    _drill(tmp_path, strategy)


@pytest.mark.services
@pytest.mark.redis_server
def test_regions_on_postgresql_survive_kill_9(tmp_path):
    from m11_tenant.regions.postgres import drop_region_schemas, region_urls

    prefix = f"m11_drill_{uuid.uuid4().hex[:8]}"
    urls = region_urls(REAL_DATABASE_URL, prefix, REGIONS)  # type: ignore[arg-type]
    try:
        _drill(tmp_path, "field-merge", urls)
    finally:
        drop_region_schemas(REAL_DATABASE_URL, prefix, REGIONS)  # type: ignore[arg-type]


@pytest.fixture
def serve_env(monkeypatch):
    """`serve` exports its settings for its workers: restore the environment afterwards."""
    for name in ("M11_REGION", "M11_REGIONS", "M11_REGION_STRATEGY", "DATABASE_URL",
                 "REDIS_URL", "M11_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)

    def no_server(*_args, **_kwargs):
        raise AssertionError("serve started a server instead of refusing")

    monkeypatch.setattr(uvicorn, "run", no_server)
    return monkeypatch


def test_a_region_without_redis_url_refuses_to_start(serve_env, capsys):
    assert main(["serve", "--region", "eu", "--regions", "us,eu,ap"]) == 1
    err = capsys.readouterr().err
    assert "REDIS_URL=redis://" in err and "fakeredis" in err


def test_a_region_must_be_in_the_region_list(serve_env, capsys):
    serve_env.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["serve", "--region", "mars", "--regions", "us,eu,ap"]) == 1
    assert "'mars' is not in the region list us,eu,ap" in capsys.readouterr().err


def test_a_region_runs_as_one_worker(serve_env, capsys):
    serve_env.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    serve_env.setenv("M11_REGION", "us")  # from the environment (or .env) as well
    serve_env.setenv("M11_REGIONS", "us,eu")
    assert main(["serve", "--workers", "2"]) == 1
    assert "--workers 1 per region" in capsys.readouterr().err


def test_region_settings_come_from_dot_env_too(serve_env, tmp_path, capsys):
    serve_env.chdir(tmp_path)
    (tmp_path / ".env").write_text("M11_REGION=ap\nM11_REGIONS=us,eu,ap\n"
                                   "M11_REGION_STRATEGY=lww\n", encoding="utf-8")
    assert main(["serve"]) == 1  # a region from .env, and still no REDIS_URL
    assert "needs REDIS_URL=redis://" in capsys.readouterr().err
