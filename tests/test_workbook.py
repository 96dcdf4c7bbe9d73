"""The notebooks' sandbox and printers: clean, private, repeatable."""

from __future__ import annotations

import traceback
from pathlib import Path

from m11_tenant import workbook
from m11_tenant.workbook import StepClock, measure_paths, open_sandbox, scaling_run, show


def test_each_sandbox_is_private_and_seeded():
    one, two = open_sandbox(), open_sandbox(seed=False)
    try:
        assert len(one.repo.list_tenants()) == 6 and two.repo.list_tenants() == []
        one.repo.update_config("acme", {"top_k": 7})
        one.repo.get_config("acme")
        assert two.redis_client().keys() == []  # nothing cached on the other server
        assert two.repo.get_record("acme").version == 0
    finally:
        one.close()
        two.close()


def test_sandbox_repositories_share_or_own_database_and_cache():
    box = open_sandbox(seed=False)
    try:
        box.repo.update_config("acme", {"top_k": 7})
        assert box.open_repository(database="shared").get_config("acme").top_k == 7
        assert box.open_repository(database="own", redis="own").get_record("acme").version == 0
        cached = box.open_repository(redis="shared")
        cached.get_config("acme")
        assert box.redis_client().exists("m11:tenant_config:acme")
        assert box.open_repository(redis="none").cache.enabled is False
    finally:
        box.close()


def test_same_seed_same_timestamps_and_ids():
    runs = []
    for _ in range(2):
        box = open_sandbox()
        try:
            box.repo.update_config("startup-co", {"top_k": 4})
            runs.append((box.repo.get_record("startup-co").updated_at,
                         box.unique_tenant_id("t"), box.unique_tenant_id("t")))
        finally:
            box.close()
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[0][2]


def test_step_clock_steps():
    clock = StepClock()
    assert (clock() - clock.start, clock() - clock.start) == (clock.step * 0, clock.step)


def test_redis_and_database_outages_are_reversible_or_visible():
    box = open_sandbox()
    try:
        box.redis_down()
        assert box.repo.health()["status"] == "degraded"
        box.redis_up()
        assert box.repo.health()["status"] == "ok"
        box.database_down(box.repo)
        assert box.repo.health()["services"]["database"].startswith("down")
    finally:
        box.close()


def test_show_prints_sorted_json_of_models_and_dataclasses(capsys):
    box = open_sandbox()
    try:
        show(box.repo.get_record("startup-co"), fields=["version", "tenant_id"])
        assert capsys.readouterr().out == '{\n  "tenant_id": "startup-co",\n  "version": 1\n}\n'
        show({"b": {2, 1}, "a": (1,)})
        assert capsys.readouterr().out.split() == ['{', '"a":', '[', '1', '],', '"b":', '[',
                                                   '1,', '2', ']', '}']
    finally:
        box.close()


def test_scaling_run_counts_are_exact_and_repeatable():
    first = scaling_run(tenant_counts=(5, 30), reads=60, warmup=20, near_cache_size=20, seed=3)
    second = scaling_run(tenant_counts=(5, 30), reads=60, warmup=20, near_cache_size=20, seed=3)
    counts = [(r["tenants"], r["hits"], r["misses"], r["sources"]) for r in first]
    assert counts == [(r["tenants"], r["hits"], r["misses"], r["sources"]) for r in second]
    for r in first:
        assert r["reads"] == r["hits"] + r["misses"] == 60
        assert r["misses"] == 0  # steady state: every tenant was read during warm-up
        assert sum(s["samples"] for s in r["latency_us"].values()) == 60
        assert all(s["p99_us"] is None for s in r["latency_us"].values())  # < 100 samples
    # 30 tenants in a near cache of 20: some reads come back from Redis, none from the DB
    assert set(first[1]["sources"]) == {"near", "cache"}


def test_scaling_run_measures_reads_during_concurrent_writes():
    [result] = scaling_run(tenant_counts=(12,), reads=30, warmup=10, writes=5, seed=3)
    live = result["with_writes"]
    # The live phase stops at the writer's 5th write or after MAX_LIVE_READS reads, whichever
    # comes first: on a loaded machine the writer may not get to all five.
    assert 0 < live["writes"] <= 5
    assert live["reads"] == live["hits"] + live["misses"] > 0


def test_measure_paths_times_every_step():
    paths = measure_paths(repeat=5)
    assert set(paths) == {"near_cache_hit", "redis_hit", "fakeredis_get", "json_parse",
                          "validate", "sqlite_read"}
    assert all(p["samples"] >= 5 for p in paths.values())


def test_opening_a_repository_does_not_move_the_clock():
    box = open_sandbox(seed=False)
    try:
        before = box.clock.calls
        box.open_repository(database="own", redis="own")
        assert box.clock.calls == before
        box.repo.update_config("acme", {"top_k": 4})
        assert box.repo.get_record("acme").updated_at == "2026-01-05T09:00:00+00:00"
    finally:
        box.close()


def test_near_cache_modes_show_staleness_and_its_fix():
    box = open_sandbox()
    try:
        deaf_a, deaf_b = (box.open_repository(near="no-pubsub") for _ in range(2))
        deaf_a.get_record("budget-saas")
        deaf_b.update_config("budget-saas", {"top_k": 7})
        assert deaf_a.get_record("budget-saas").source == "near"  # stale on purpose
        assert deaf_a.get_config("budget-saas").top_k != 7

        a, b = box.open_repository(), box.open_repository()
        a.get_record("budget-saas")
        assert a.get_record("budget-saas").source == "near"
        written = b.update_config("budget-saas", {"top_k": 4})
        box.wait_for_invalidation("budget-saas", written.version)
        assert a.get_config("budget-saas").top_k == 4
        assert box.open_repository(near="off").near is None
    finally:
        box.close()


def test_expire_drops_both_tiers():
    box = open_sandbox()
    try:
        box.repo.get_record("startup-co")
        box.expire(box.repo, "startup-co")
        assert box.repo.get_record("startup-co").source == "database"
    finally:
        box.close()


def test_a_traceback_names_the_learners_line_not_the_thread_the_package_ran_in(monkeypatch):
    """A query that fails in a worker thread: the standard library's frames between the
    package and the package again are neither "your code" nor where it was raised."""
    package = Path(workbook.__file__).parent
    frames = traceback.StackSummary.from_list([
        ("/tmp/ipykernel_1/cell.py", 2, "<module>", 'metered.query("edu-free", question)'),
        (str(package / "workbook.py"), 10, "query", "return self.pipeline.run(...)"),
        ("/usr/lib/python3.11/concurrent/futures/thread.py", 58, "run",
         "result = self.fn(*self.args, **self.kwargs)"),
        (str(package / "rag" / "pipeline.py"), 292, "_admit", "raise QuotaExceededError"),
    ])
    monkeypatch.setattr(traceback, "extract_tb", lambda _tb: frames)
    assert workbook._traceback_lines(ValueError, ValueError("over"), None) == [
        '  your code, line 2: metered.query("edu-free", question)',
        "  raised in _admit (m11_tenant/rag/pipeline.py, line 292)",
        "ValueError: over"]
