"""The stores' key lifecycle and console sessions (migration 4), on every backend."""

from __future__ import annotations

import sqlite_utils

from m11_tenant.store import Change, SessionRecord, open_store
from m11_tenant.store.migrations import SQLITE_MIGRATIONS

ADMIN = Change("admin", "admin", "key_created")


def test_revoke_finds_only_the_tenants_own_key(store, tenant_id):
    store.add_api_key(tenant_id, "k-own", "h-own", ADMIN)
    store.add_api_key(tenant_id + "-x", "k-other", "h-other", ADMIN)
    assert store.revoke_api_key(tenant_id, "k-other", ADMIN) is None
    assert store.revoke_api_key(tenant_id, "k-missing", ADMIN) is None
    record, changed = store.revoke_api_key(tenant_id, "k-own", Change("key:k-own", "tenant"))
    assert changed and record.revoked_by == "key:k-own" and not record.active(store.now())
    assert store.find_api_key("h-other").active(store.now())


def test_rotation_adds_the_new_key_and_ends_the_old_one_after_the_grace(store, clock,
                                                                        tenant_id):
    store.add_api_key(tenant_id, "k-old", "h-old", ADMIN)
    new = store.rotate_api_key(tenant_id, "k-old", "k-new", "h-new", ADMIN, grace_seconds=30)
    assert new.key_id == "k-new" and store.find_api_key("h-new").active(store.now())
    assert store.find_api_key("h-old").active(store.now())
    # A second rotation cannot extend the old key's life past its first end.
    store.rotate_api_key(tenant_id, "k-old", "k-newer", "h-newer", ADMIN, grace_seconds=3600)
    clock.advance(seconds=30)
    assert not store.find_api_key("h-old").active(store.now())
    assert store.rotate_api_key(tenant_id, "k-old", "k-x", "h-x", ADMIN) is None
    # Oldest first; keys made in the same second are ordered by id.
    assert [k.key_id for k in store.list_api_keys(tenant_id)] == ["k-new", "k-newer", "k-old"]


def test_touch_records_the_last_use(store, tenant_id):
    store.add_api_key(tenant_id, "k-used", "h-used", ADMIN)
    assert store.find_api_key("h-used").last_used_at is None
    store.touch_api_key("k-used", "2026-03-01T12:00:00+00:00")
    assert store.find_api_key("h-used").last_used_at == "2026-03-01T12:00:00+00:00"


def test_ended_and_expired_sessions_are_purged_when_a_new_one_starts(store, clock):
    def session(name: str, expires: str) -> SessionRecord:
        return SessionRecord(f"hash-{name}", "admin", "admin", None, "admin:fp", "csrf",
                             store.now(), expires)

    store.create_session(session("old", store.now()))
    store.create_session(session("live", "9999-01-01T00:00:00+00:00"))
    assert store.end_session("hash-live") and not store.end_session("hash-live")
    clock.advance(seconds=1)
    store.create_session(session("new", "9999-01-01T00:00:00+00:00"))
    assert store.find_session("hash-old") is None and store.find_session("hash-live") is None
    assert store.find_session("hash-new").ended_at is None


def test_a_version_3_sqlite_database_upgrades_in_place(tmp_path, clock):
    path = tmp_path / "v3.db"
    db = sqlite_utils.Database(path)
    db["schema_migrations"].create({"version": int, "name": str, "applied_at": str},
                                   pk="version")
    for version, name, migrate in SQLITE_MIGRATIONS[:3]:
        migrate(db)
        db["schema_migrations"].insert({"version": version, "name": name, "applied_at": "x"})
    db["api_keys"].insert({"key_id": "k-v3", "tenant_id": "acme-co", "key_hash": "h-v3",
                           "created_at": "2025-01-01T00:00:00+00:00", "created_by": "admin"})
    db.close()
    store = open_store(f"sqlite:///{path}", clock=clock)
    assert store.schema_version >= 4
    record = store.find_api_key("h-v3")
    assert record.revoked_at is None and record.active(store.now())
    store.close()
