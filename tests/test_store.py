"""The store contract: one suite, run against every backend the run can reach."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import date

import pytest

from m11_tenant.errors import ConfigNotFoundError, StoreUnavailableError, VersionConflictError
from m11_tenant.store import BULK_ROLE, Change, open_store


def put(store, tenant_id, config, **change):
    return store.write(tenant_id, lambda _current: config, Change(**change))


def test_first_write_is_version_1_and_reads_back(store, tenant_id, clock):
    record = put(store, tenant_id, {"top_k": 3}, actor="alice")
    assert (record.version, record.config, record.updated_by) == (1, {"top_k": 3}, "alice")
    assert record.updated_at == clock().isoformat(timespec="seconds")
    assert store.get(tenant_id) == record


def test_unknown_tenant_reads_none(store, tenant_id):
    assert store.get(tenant_id) is None
    assert store.history(tenant_id) == []


def test_each_write_bumps_the_version(store, tenant_id):
    for n in range(1, 4):
        assert put(store, tenant_id, {"n": n}).version == n


def test_build_sees_the_current_record_inside_the_transaction(store, tenant_id):
    put(store, tenant_id, {"n": 1})
    seen = []
    store.write(tenant_id, lambda cur: seen.append(cur) or {"n": cur.config["n"] + 1}, Change())
    assert seen[0].version == 1
    assert store.get(tenant_id).config == {"n": 2}


def test_a_failing_build_changes_nothing(store, tenant_id):
    put(store, tenant_id, {"n": 1})

    def boom(_current):
        raise ValueError("invalid")

    with pytest.raises(ValueError, match="invalid"):
        store.write(tenant_id, boom, Change())
    assert store.get(tenant_id).version == 1
    assert len(store.history(tenant_id)) == 1
    assert len(store.audit(tenant_id)) == 1


def test_stale_expected_version_is_a_conflict_and_changes_nothing(store, tenant_id):
    put(store, tenant_id, {"n": 1})
    put(store, tenant_id, {"n": 2}, expected_version=1)
    with pytest.raises(VersionConflictError) as err:
        put(store, tenant_id, {"n": 3}, expected_version=1)
    assert (err.value.expected, err.value.actual) == (1, 2)
    assert "someone else changed it first" in str(err.value)
    assert store.get(tenant_id).config == {"n": 2}


def test_expected_version_zero_means_create_only(store, tenant_id):
    assert put(store, tenant_id, {"n": 1}, expected_version=0).version == 1
    with pytest.raises(VersionConflictError):
        put(store, tenant_id, {"n": 9}, expected_version=0)


def test_history_keeps_the_last_ten_versions_newest_first(store, tenant_id):
    for n in range(1, 14):
        put(store, tenant_id, {"n": n})
    history = store.history(tenant_id)
    assert [h.version for h in history] == list(range(13, 3, -1))
    assert history[0].config == store.get(tenant_id).config


def test_history_limit_is_configurable(store_url, tenant_id, clock):
    store = open_store(store_url, history_limit=3, clock=clock)
    for n in range(5):
        put(store, tenant_id, {"n": n})
    assert [h.version for h in store.history(tenant_id)] == [5, 4, 3]
    store.close()


def test_delete_removes_the_current_config_and_keeps_numbering(store, tenant_id):
    put(store, tenant_id, {"n": 1})
    put(store, tenant_id, {"n": 2})
    deleted = store.delete(tenant_id, Change(action="delete"))
    assert deleted.version == 2
    assert store.get(tenant_id) is None
    with pytest.raises(ConfigNotFoundError, match="no stored config"):
        store.delete(tenant_id, Change(action="delete"))
    # Versions never repeat, so a stale ETag from before the delete cannot match again.
    assert put(store, tenant_id, {"n": 3}).version == 3


def test_delete_with_stale_version_is_a_conflict(store, tenant_id):
    put(store, tenant_id, {"n": 1})
    put(store, tenant_id, {"n": 2})
    with pytest.raises(VersionConflictError):
        store.delete(tenant_id, Change(action="delete", expected_version=1))
    assert store.get(tenant_id).version == 2


def test_audit_log_records_who_what_when_why(store, tenant_id, clock):
    put(store, tenant_id, {"top_k": 5}, actor="alice", role="tenant", action="update",
        reason="more context")
    clock.advance(minutes=5)
    put(store, tenant_id, {"top_k": 7}, actor="bob", role="admin", action="replace")
    store.delete(tenant_id, Change(actor="carol", action="delete", reason="offboarding"))
    newest, middle, oldest = store.audit(tenant_id)
    assert (oldest.actor, oldest.role, oldest.action, oldest.reason) == ("alice", "tenant", "update", "more context")
    assert oldest.diff == {"top_k": [None, 5]}
    assert middle.diff == {"top_k": [5, 7]} and middle.at > oldest.at
    assert (newest.action, newest.version, newest.diff) == ("delete", 2, {"top_k": [7, None]})


def test_audit_can_record_a_refused_attempt(store, tenant_id):
    store.record_audit(tenant_id, Change(actor="key:other", role="tenant", action="denied",
                                         reason="tenant key used on another tenant"))
    entry = store.audit(tenant_id)[0]
    assert (entry.action, entry.version, entry.diff) == ("denied", None, {})


def test_audit_filters_by_tenant_and_pages(store, tenant_id):
    other = tenant_id + "-other"
    for n in range(3):
        put(store, tenant_id, {"n": n})
    put(store, other, {"n": 0})
    assert {e.tenant_id for e in store.audit(tenant_id)} == {tenant_id}
    assert len(store.audit(tenant_id, limit=2)) == 2
    assert [e.version for e in store.audit(tenant_id, limit=2, offset=1)] == [2, 1]


def test_list_and_count_tenants(store, tenant_id):
    ids = sorted(f"{tenant_id}-{n}" for n in range(3))
    before = store.count_tenants()
    for tid in ids:
        put(store, tid, {})
    assert store.count_tenants() == before + 3
    listed = store.list_tenants(limit=10_000)
    assert [t for t in listed if t.startswith(tenant_id)] == ids
    assert store.list_tenants(limit=1, offset=listed.index(ids[1])) == [ids[1]]
    assert [r.tenant_id for r in store.get_many(ids[:2])] == ids[:2]


def test_usage_ledger_adds_up_per_day_and_month(store, tenant_id):
    for day in (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 2)):
        store.record_usage(tenant_id, day, queries=1, prompt_tokens=100, completion_tokens=20,
                           cost_usd=0.5)
    store.record_usage(tenant_id, date(2026, 2, 28), queries=1, prompt_tokens=1,
                       completion_tokens=1, cost_usd=9.0)
    totals = store.usage_totals(tenant_id, date(2026, 3, 2))
    assert totals.queries_today == 2 and totals.tokens_today == 240
    assert totals.cost_today_usd == pytest.approx(1.0)
    assert totals.cost_month_usd == pytest.approx(1.5)
    assert store.usage_totals(tenant_id + "x", date(2026, 3, 2)).queries_today == 0


def test_reopening_applies_no_migration_twice(database_url, tenant_id):
    first = open_store(database_url)
    put(first, tenant_id, {"n": 1})
    first.close()
    again = open_store(database_url)
    assert again.get(tenant_id).config == {"n": 1}
    again.close()


# ---------------------------------------------------------------- two processes, no lost update

def _increment_many(url: str, tenant_id: str, times: int) -> None:
    store = open_store(url)
    for _ in range(times):
        store.write(tenant_id, lambda cur: {"n": cur.config["n"] + 1}, Change(actor="worker"))
    store.close()


def test_two_threads_incrementing_the_same_tenant_lose_no_update(store, tenant_id):
    put(store, tenant_id, {"n": 0})
    workers = [threading.Thread(target=lambda: [
        store.write(tenant_id, lambda cur: {"n": cur.config["n"] + 1}, Change(actor="worker"))
        for _ in range(40)]) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert (store.get(tenant_id).config, store.get(tenant_id).version) == ({"n": 120}, 121)


def test_two_processes_incrementing_the_same_tenant_lose_no_update(database_store, database_url,
                                                                  tenant_id):
    store = database_store
    put(store, tenant_id, {"n": 0})
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_increment_many, args=(database_url, tenant_id, 40))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert store.get(tenant_id).config == {"n": 80}
    assert store.get(tenant_id).version == 81


# ---------------------------------------------------------------- more of the contract

def test_write_many_is_all_or_nothing(store, tenant_id):
    first, second = f"{tenant_id}-a", f"{tenant_id}-b"
    put(store, first, {"n": 1})
    audit_before = store.audit()

    def boom(_current):
        raise ValueError("invalid for b")

    with pytest.raises(ValueError, match="invalid for b"):
        store.write_many({first: lambda _c: {"n": 2}, second: boom}, Change())
    assert store.get(first).config == {"n": 1} and store.get(second) is None
    assert store.history(first)[0].version == 1 and store.audit() == audit_before
    written, skipped = store.write_many({first: lambda _c: {"n": 2},
                                         second: lambda _c: {"n": 1}}, Change())
    assert ([r.version for r in written], skipped) == ([2, 1], [])


def test_write_many_skips_locked_tenants_or_writes_their_platform_part(store, tenant_id):
    free, locked = f"{tenant_id}-free", f"{tenant_id}-locked"
    put(store, locked, {"n": 0})
    store.set_locked(locked, True, Change(action="lock"))
    bulk = Change(role=BULK_ROLE)
    builds = {free: lambda _c: {"n": 1}, locked: lambda _c: {"n": 1}}
    written, skipped = store.write_many(builds, bulk)
    assert ([r.tenant_id for r in written], skipped) == ([free], [locked])
    written, skipped = store.write_many(builds, bulk, (Change(role=BULK_ROLE, reason="plan"),
                                                       {locked: lambda _c: {"plan": "pro"}}))
    assert skipped == [] and store.get(locked).config == {"plan": "pro"}
    assert store.audit(locked)[0].reason == "plan"


def test_refusals_count_in_one_row_per_window(store, tenant_id, clock):
    change = Change(actor="key:abc", role="tenant", action="denied", reason="refused: x")
    for _ in range(3):
        store.record_refusal(tenant_id, change, 3600)
    store.record_refusal(tenant_id, Change("key:abc", "tenant", "denied", "other"), 3600)
    clock.advance(hours=1)
    store.record_refusal(tenant_id, change, 3600)
    assert [(e.reason, e.count) for e in store.audit(tenant_id)] == [
        ("refused: x", 1), ("other", 1), ("refused: x", 3)]


def test_reads_are_copies_the_caller_cannot_change_the_store_through(store, tenant_id):
    put(store, tenant_id, {"branding": {"primary_color": "#000000"}})
    store.get(tenant_id).config["branding"]["primary_color"] = "#ffffff"
    store.history(tenant_id)[0].config["top_k"] = 99
    assert store.get(tenant_id).config == {"branding": {"primary_color": "#000000"}}
    assert store.history(tenant_id)[0].config == {"branding": {"primary_color": "#000000"}}


def test_a_disconnected_store_fails_every_call_until_reconnected(store, tenant_id):
    put(store, tenant_id, {"n": 1})
    store.disconnect()
    with pytest.raises(StoreUnavailableError):
        store.get(tenant_id)
    with pytest.raises(StoreUnavailableError):
        put(store, tenant_id, {"n": 2})
    with pytest.raises(StoreUnavailableError):
        store.ping()
    store.reconnect()
    store.reconnect()  # a no-op while connected
    assert store.get(tenant_id).config == {"n": 1}
    assert put(store, tenant_id, {"n": 2}).version == 2


def test_every_backend_implements_every_port(store):
    from m11_tenant.store import Store

    members = {name for cls in Store.__mro__ if cls.__module__ == "m11_tenant.store.ports"
               for name in vars(cls) if not name.startswith("_")}
    assert {"get", "audit", "add_api_key", "set_locked", "reserve_query",
            "append_query_log", "disconnect"} <= members
    assert not [name for name in sorted(members) if not hasattr(store, name)]
