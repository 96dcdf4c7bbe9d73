"""Console sessions kept in the store: issued, read, expired, ended, ended by revocation.

On every backend this run can reach (the ``store`` fixture), with the store's fixed clock.
"""

from __future__ import annotations

import pytest

from m11_tenant.console.session import Sessions
from m11_tenant.store import Change
from m11_tenant.web.auth import Principal, admin_fingerprint, hash_key

ADMIN = Principal("admin", "admin")
FINGERPRINT = admin_fingerprint("m11a_one-admin-key-0123456789-abcdefXYZ")


@pytest.fixture
def tenant(store, tenant_id) -> Principal:
    store.add_api_key(tenant_id, "k-sessions", hash_key("m11k_secret"), Change("admin", "admin"))
    return Principal("tenant", "key:k-sessions", tenant_id, "k-sessions")


def test_a_session_round_trips_and_expires(store, clock, tenant):
    sessions = Sessions(store, FINGERPRINT, lifetime=60)
    session = sessions.issue(tenant)
    read = sessions.read(session.token)
    assert read is not None and read.principal == tenant and read.csrf == session.csrf
    assert tenant.tenant_id not in session.token  # the cookie says nothing about who
    clock.advance(seconds=59)
    assert sessions.read(session.token) is not None
    clock.advance(seconds=1)
    assert sessions.read(session.token) is None


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: "x" + t,
    lambda t: "",
    lambda t: "a" * 2000,
])
def test_an_altered_or_unknown_token_is_refused(store, mangle):
    sessions = Sessions(store, FINGERPRINT)
    token = sessions.issue(ADMIN).token
    assert sessions.read(mangle(token)) is None
    assert sessions.read(None) is None


def test_the_store_keeps_only_a_hash_of_the_token(store):
    session = Sessions(store, FINGERPRINT).issue(ADMIN)
    record = store.find_session(hash_key(session.token))
    assert record is not None and session.token not in repr(record)


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(store, tenant):
    sessions = Sessions(store, FINGERPRINT)
    session, other = sessions.issue(tenant), sessions.issue(tenant)
    sessions.end(session)
    assert Sessions(store, FINGERPRINT).read(session.token) is None  # another process
    assert sessions.read(other.token) is not None  # only that sign-in ended


def test_revoking_the_key_ends_its_sessions(store, tenant):
    sessions = Sessions(store, FINGERPRINT)
    session = sessions.issue(tenant)
    assert store.revoke_api_key(tenant.tenant_id, "k-sessions", Change("admin", "admin"))
    assert sessions.read(session.token) is None


def test_a_new_admin_key_ends_the_admin_sessions(store):
    session = Sessions(store, FINGERPRINT).issue(ADMIN)
    other_key = admin_fingerprint("m11a_another-admin-key-0123456789-abcdef")
    assert Sessions(store, other_key).read(session.token) is None
    assert Sessions(store, FINGERPRINT).read(session.token) is not None


def test_the_csrf_token_belongs_to_one_session(store):
    sessions = Sessions(store, FINGERPRINT)
    one, two = sessions.issue(ADMIN), sessions.issue(ADMIN)
    assert Sessions.check_csrf(one, one.csrf)
    assert not Sessions.check_csrf(one, two.csrf)
    assert not Sessions.check_csrf(one, "")
    assert not Sessions.check_csrf(one, None)
