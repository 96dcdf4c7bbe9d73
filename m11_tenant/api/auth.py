"""Who is calling: the platform admin key, or a per-tenant key stored hashed.

Keys are long random strings (256 bits), so a plain SHA-256 of the key is enough to store
(no password-style slow hash needed: there is nothing to brute-force). The key is shown
once when created and never again. A tenant key reads and changes only its own tenant;
every refused attempt is counted in the audit log under the caller, action ``denied``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass

from m11_tenant.api.errors import HttpError
from m11_tenant.errors import StoreUnavailableError
from m11_tenant.store import ApiKeyRecord, Change, ConfigStore

TENANT_KEY_PREFIX = "m11k_"
ADMIN = "admin"
TENANT = "tenant"
MAX_KEY_CHARS = 200
DENIED_WINDOW_SECONDS = 3600  # refused attempts: one audit row per caller/target/action/hour
log = logging.getLogger("m11_tenant.api")


@dataclass(frozen=True)
class Principal:
    """The caller: ``role`` is ``admin`` or ``tenant``; ``actor`` is what the audit log shows."""

    role: str
    actor: str
    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_tenant_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``: the id is public (audit, listings), the key is secret."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TENANT_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def new_admin_key() -> str:
    return "m11a_" + secrets.token_urlsafe(32)


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or a 401.

    Tenant keys found in the store are remembered in process (keys are never rewritten,
    only added), so a hot path costs one hash and one dict lookup.
    """

    def __init__(self, store: ConfigStore, admin_key: str):
        self.store, self._admin_key = store, admin_key
        self._known: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise _unauthorized("missing Authorization header; send 'Authorization: Bearer "
                                "<key>' with the admin key or a tenant key")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_CHARS:
            raise _unauthorized("Authorization must be 'Bearer <key>'")
        if hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return Principal(ADMIN, ADMIN)
        digest = hash_key(key)
        with self._lock:
            known = self._known.get(digest)
        if known is not None:
            return known
        if not key.startswith(TENANT_KEY_PREFIX):
            raise _unauthorized("unknown API key")
        record = self.store.find_api_key(digest)
        if record is None:
            raise _unauthorized("unknown API key")
        principal = principal_for(record)
        with self._lock:
            self._known[digest] = principal
        return principal


def principal_for(record: ApiKeyRecord) -> Principal:
    return Principal(TENANT, f"key:{record.key_id}", record.tenant_id)


def _unauthorized(message: str) -> HttpError:
    return HttpError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def deny(store: ConfigStore, principal: Principal, what: str) -> HttpError:
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
        if own is not None and store.get(own) is not None:
            store.record_refusal(own, change, DENIED_WINDOW_SECONDS)
        else:
            log.warning("refused %s (%s): %s", principal.actor, own, what)
    return HttpError(403, "forbidden", f"this key may not {what}")


def authorize_tenant(store: ConfigStore, principal: Principal, tenant_id: str,
                     what: str) -> None:
    """Admin: anything. Tenant key: only its own tenant (403 and an audit count otherwise)."""
    if principal.is_admin or principal.tenant_id == tenant_id:
        return
    raise deny(store, principal, f"{what} of tenant {tenant_id!r}")


def require_admin(store: ConfigStore, principal: Principal, what: str) -> None:
    """Admin-only operations; a tenant key's attempt is counted under its own tenant."""
    if principal.is_admin:
        return
    raise deny(store, principal, f"{what} (admin only)")
