"""The store methods the API adds (migration v3): hashed API keys and tenant locks.

They use the ``store`` fixture, so they run on every backend this run can reach (the
PostgreSQL store implements the same protocol methods).
"""

from __future__ import annotations

import pytest

from m11_tenant.errors import TenantLockedError
from m11_tenant.store import BULK_ROLE, Change


def test_api_key_is_found_by_hash_only(store, tenant_id):
    record = store.add_api_key(tenant_id, f"k-{tenant_id}", "hash-" + tenant_id,
                               Change(actor="admin", role="admin", action="key_created"))
    assert (record.tenant_id, record.created_by) == (tenant_id, "admin")
    assert store.find_api_key("hash-" + tenant_id) == record
    assert store.find_api_key("hash-of-something-else-" + tenant_id) is None
    assert store.audit(tenant_id)[0].action == "key_created"


def test_lock_is_idempotent_and_audited(store, tenant_id):
    change = Change(actor="key:x", role="tenant", action="lock", reason="quarter close")
    assert store.is_locked(tenant_id) is False
    assert store.set_locked(tenant_id, True, change) is True
    assert store.set_locked(tenant_id, True, change) is False
    assert store.is_locked(tenant_id) is True
    entries = store.audit(tenant_id)
    assert [(e.action, e.diff, e.reason) for e in entries] == [
        ("lock", {"locked": [False, True]}, "quarter close")]
    assert store.set_locked(tenant_id, False, Change(action="unlock")) is True
    assert store.is_locked(tenant_id) is False


def test_bulk_write_skips_a_locked_tenant_and_changes_nothing(store, tenant_id):
    store.write(tenant_id, lambda _c: {"temperature": 0.1}, Change())
    store.set_locked(tenant_id, True, Change(action="lock"))
    audit_before = store.audit(tenant_id)
    with pytest.raises(TenantLockedError, match="locked its config"):
        store.write(tenant_id, lambda _c: {"temperature": 0.9}, Change(role=BULK_ROLE))
    assert store.get(tenant_id).config == {"temperature": 0.1}
    assert store.audit(tenant_id) == audit_before
    # A targeted (non-bulk) write still goes through: the lock only guards bulk changes.
    assert store.write(tenant_id, lambda _c: {"temperature": 0.2}, Change()).version == 2

