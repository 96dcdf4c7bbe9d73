"""Who is calling: the platform admin key, or a per-tenant key stored hashed.

Keys are long random strings (256 bits), so a plain SHA-256 of the key is enough to store
(no password-style slow hash needed: there is nothing to brute-force). The key is shown
once when created and never again. A tenant key reads and changes only its own tenant;
every refused attempt is counted in the audit log under the caller, action ``denied``.

A key can be revoked (or rotated, the old one ending after a grace period), and every
server process must refuse it within a second: the authenticator keeps what it read about
a key for at most :data:`KEY_CACHE_SECONDS`, then asks the database again. Failed
authentications count against the caller's address (:class:`AuthThrottle`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from m11_tenant.errors import StoreUnavailableError, WeakAdminKeyError
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.store import ApiKeyRecord, Change, KeyStore
from m11_tenant.web.errors import HttpError
from m11_tenant.web.ratelimit import AuthThrottle

TENANT_KEY_PREFIX = "m11k_"
ADMIN = "admin"
TENANT = "tenant"
MAX_KEY_CHARS = 200
DENIED_WINDOW_SECONDS = 3600  # refused attempts: one audit row per caller/target/action/hour
log = logging.getLogger("m11_tenant.api")
#: How long a process trusts what it read about a key: a revocation reaches every process
#: within this time (plus one database read).
KEY_CACHE_SECONDS = 0.5
#: While the database is down, keys read as active this recently keep working (reads are
#: served from the cache then); nothing can be revoked meanwhile anyway.
KEY_OUTAGE_GRACE_SECONDS = 300.0
#: ``last_used_at`` is written at most this often per key (a write per request would cost
#: more than the request).
TOUCH_INTERVAL = timedelta(seconds=60)
MIN_ADMIN_KEY_CHARS = 32
MIN_ADMIN_KEY_DISTINCT = 10
# The passwords people actually type for an admin key; every entry is refused whatever its
# length, and the length rule catches the rest of any common-password list.
COMMON_PASSWORDS = frozenset({
    "change-me", "changeme", "change_me", "password", "passw0rd", "admin", "administrator",
    "secret", "letmein", "123456", "12345678", "123456789", "qwerty", "test", "default",
    "root", "master", "welcome", "iloveyou", "trustno1", "not-a-secret",
    "passwordpasswordpasswordpassword", "changemechangemechangemechangeme",
    "12345678901234567890123456789012", "00000000000000000000000000000000",
    "abcdefghijklmnopqrstuvwxyz012345", "qwertyuiopasdfghjklzxcvbnm123456",
})
MAKE_ADMIN_KEY = ("python -c 'import secrets; print(\"m11a_\" + secrets.token_urlsafe(32))'")


@dataclass(frozen=True)
class Principal:
    """The caller: ``role`` is ``admin`` or ``tenant``; ``actor`` is what the audit log shows;
    ``key_id`` is the tenant key it authenticated with (None for the admin)."""

    role: str
    actor: str
    tenant_id: str | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


ADMIN_PRINCIPAL = Principal(ADMIN, ADMIN)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_tenant_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``: the id is public (audit, listings), the key is secret."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TENANT_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def new_admin_key() -> str:
    return "m11a_" + secrets.token_urlsafe(32)


def check_admin_key(key: str) -> str:
    """Return ``key`` if it is strong enough to guard every tenant, else raise.

    Raises:
        WeakAdminKeyError: shorter than 32 characters, a common password, or too
            repetitive; the message says how to make a good one.
    """
    problem = ""
    if len(key) < MIN_ADMIN_KEY_CHARS:
        problem = f"has {len(key)} characters (at least {MIN_ADMIN_KEY_CHARS} are needed)"
    elif key.lower() in COMMON_PASSWORDS:
        problem = "is a common password"
    elif len(set(key)) < MIN_ADMIN_KEY_DISTINCT:
        problem = f"uses only {len(set(key))} distinct characters"
    if problem:
        raise WeakAdminKeyError(
            f"M11_ADMIN_KEY {problem}: it guards every tenant, so it must be long and random. "
            f"Make one with: {MAKE_ADMIN_KEY} (or unset M11_ADMIN_KEY: `make serve` then "
            "generates one and keeps it in .m11/admin_key)")
    return key


def admin_fingerprint(admin_key: str) -> str:
    """What a console session records about the admin key it was signed in with: a new
    admin key ends the old key's sessions."""
    return "admin:" + hash_key(admin_key)[:16]


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or a 401 (or a 429 for
    an address that failed too often; see :class:`AuthThrottle`).

    What a tenant key's row says is trusted for :data:`KEY_CACHE_SECONDS`, so a hot path
    costs one hash and one dict lookup most of the time, and a revocation in any process
    is seen here within that time.
    """

    def __init__(self, store: KeyStore, admin_key: str, *,
                 throttle: AuthThrottle | None = None,
                 cache_seconds: float = KEY_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self._admin_key, self.throttle = store, admin_key, throttle
        self.admin_fingerprint = admin_fingerprint(admin_key)
        self._cache_seconds, self._clock = cache_seconds, clock
        self._known: dict[str, tuple[float, ApiKeyRecord, Principal]] = {}
        self._lock = threading.Lock()

    def peek(self, authorization: str | None, client: str | None = None) -> Principal | None:
        """The caller if it is known without asking the store or Redis (the admin key, or a
        tenant key read less than ``cache_seconds`` ago and not revoked, from an address
        known not to be cooling down), else None — then call :meth:`authenticate`, off the
        event loop, for the answer, the 401 or the 429. Never blocks."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_CHARS:
            return None
        if self.throttle is not None and not self.throttle.known_clean(client):
            return None
        if hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return ADMIN_PRINCIPAL
        known = self._known.get(hash_key(key))  # a single dict read: safe without the lock
        if known is None or self._clock() - known[0] >= self._cache_seconds:
            return None
        _, record, principal = known
        if record.revoked_at is not None and not record.active(self.store.now()):
            return None
        return principal

    def authenticate(self, authorization: str | None, client: str | None = None) -> Principal:
        """The caller of a request from address ``client`` (None: not throttled)."""
        if not authorization:
            raise _unauthorized("missing Authorization header; send 'Authorization: Bearer "
                                "<key>' with the admin key or a tenant key")
        if self.throttle is not None and client is not None:
            self.throttle.check(client)
        try:
            return self._principal(authorization)
        except HttpError as exc:
            if exc.status == 401 and self.throttle is not None and client is not None:
                self.throttle.failed(client)  # a 429 instead, past the limit
            raise

    def _principal(self, authorization: str) -> Principal:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_CHARS:
            raise _unauthorized("Authorization must be 'Bearer <key>'")
        if hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return ADMIN_PRINCIPAL
        if not key.startswith(TENANT_KEY_PREFIX):
            raise _unauthorized("unknown API key")
        known = self._known_key(hash_key(key))
        if known is None:
            raise _unauthorized("unknown API key")
        _, record, principal = known
        if record.revoked_at is not None and not record.active(self.store.now()):
            raise _unauthorized(f"API key {record.key_id} was revoked; ask for a new key")
        return principal

    def _known_key(self, digest: str) -> tuple[float, ApiKeyRecord, Principal] | None:
        """What the store says about a key: remembered for ``cache_seconds``."""
        now = self._clock()
        known = self._known.get(digest)  # a single dict read: safe without the lock
        if known is not None and now - known[0] < self._cache_seconds:
            return known
        try:
            record = self.store.find_api_key(digest)
        except StoreUnavailableError:
            if known is not None and now - known[0] < KEY_OUTAGE_GRACE_SECONDS:
                return known
            raise
        with self._lock:
            if record is None:
                self._known.pop(digest, None)
                return None
            known = self._known[digest] = (now, record, principal_for(record))
        self._touch(record)
        return known

    def forget(self, key_id: str) -> None:
        """Drop what this process knows about ``key_id`` (it was just revoked here), so the
        next request with it reads the database at once."""
        with self._lock:
            for digest in [d for d, (_, r, _p) in self._known.items() if r.key_id == key_id]:
                del self._known[digest]

    def _touch(self, record: ApiKeyRecord) -> None:
        # Wall-clock time, not the store's clock: "last used" is a hint for people, and
        # reading a test's stepping clock on every request would move its stored times.
        now = datetime.now(UTC)
        last = record.last_used_at
        if last is not None and now - datetime.fromisoformat(last) < TOUCH_INTERVAL:
            return
        with contextlib.suppress(StoreUnavailableError):  # a hint, not a gate
            self.store.touch_api_key(record.key_id, now.isoformat(timespec="seconds"))


def principal_for(record: ApiKeyRecord) -> Principal:
    return Principal(TENANT, f"key:{record.key_id}", record.tenant_id, record.key_id)


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def deny(repo: TenantConfigRepository, principal: Principal, what: str) -> HttpError:
    """Record a refused attempt and return the 403 to raise.

    The line goes under the CALLER (its key id and its own tenant), never under the
    tenant it tried to reach: an attacker cannot write into another tenant's log, and a
    made-up tenant id never gets a row. Repeats are one row with a count per caller,
    target and action per ``DENIED_WINDOW_SECONDS``. A caller whose own tenant has no
    stored config gets no row either (the attempt goes to the application log).
    """
    change = Change(principal.actor, principal.role, "denied", f"refused: {what}")
    # The refusal stands even when the database is down and it cannot be recorded.
    with contextlib.suppress(StoreUnavailableError):
        own = principal.tenant_id
        if own is not None and repo.get_stored(own) is not None:
            repo.record_refusal(own, change, DENIED_WINDOW_SECONDS)
        else:
            log.warning("refused %s (%s): %s", principal.actor, own, what)
    return HttpError(403, "forbidden", f"this key may not {what}")


def authorize_tenant(repo: TenantConfigRepository, principal: Principal, tenant_id: str,
                     what: str) -> None:
    """Admin: anything. Tenant key: only its own tenant (403 and an audit count otherwise)."""
    if principal.is_admin or principal.tenant_id == tenant_id:
        return
    raise deny(repo, principal, f"{what} of tenant {tenant_id!r}")


def require_admin(repo: TenantConfigRepository, principal: Principal, what: str) -> None:
    """Admin-only operations; a tenant key's attempt is counted under its own tenant."""
    if principal.is_admin:
        return
    raise deny(repo, principal, f"{what} (admin only)")
