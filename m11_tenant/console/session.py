"""Console sign-in: a random token in a cookie, the session itself kept in the database.

Why server-side: signing out must end the session (the old cookie stops working anywhere
it was copied), and so must revoking the key the session was signed in with. Every
``serve`` process reads the same database, so each of them sees both at once. The cookie
carries 256 random bits and nothing else; the database keeps only their SHA-256, so a
copy of the database hands out no sessions. There is no signing secret at all, hence
nothing derived from the admin key and nothing to guess offline from a cookie. Admin
sessions record a fingerprint of the admin key: a new admin key ends them.

CSRF: every session has its own random token, stored with it and sent in every form (the
synchronizer-token pattern), compared in constant time. The cookie is also
``SameSite=Strict``, so a cross-site form post arrives without it in current browsers.
The sign-in form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from m11_tenant.store import KeyStore, SessionRecord
from m11_tenant.text import secret_equal
from m11_tenant.web.auth import ADMIN, TENANT, Principal, hash_key

SESSION_COOKIE = "m11_console"
LOGIN_COOKIE = "m11_console_login"
SESSION_SECONDS = 8 * 3600
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Session:
    """A live sign-in: who (``principal``), until when, the cookie value, its CSRF token."""

    principal: Principal
    expires: str
    token: str
    csrf: str


class Sessions:
    """Starts, reads and ends console sessions in the store."""

    def __init__(self, store: KeyStore, admin_fingerprint: str, *,
                 lifetime: int = SESSION_SECONDS):
        self.store, self.admin_fingerprint, self.lifetime = store, admin_fingerprint, lifetime

    def issue(self, principal: Principal) -> Session:
        """Start a session for ``principal`` (just authenticated) and return it."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.store.now()
        expires = (datetime.fromisoformat(now) + timedelta(seconds=self.lifetime)).isoformat(
            timespec="seconds")
        self.store.create_session(SessionRecord(
            hash_key(token), principal.role, principal.actor, principal.tenant_id,
            principal.key_id or self.admin_fingerprint, csrf, now, expires))
        return Session(principal, expires, token, csrf)

    def read(self, token: str | None) -> Session | None:
        """The live session of ``token``; None when absent, unknown, ended, expired, or its
        key was revoked (or, for the admin, the admin key changed).

        Raises:
            StoreUnavailableError: the database cannot say (the caller shows a 503).
        """
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        record = self.store.find_session(hash_key(token))
        if record is None or record.ended_at is not None:
            return None
        now = self.store.now()
        if record.expires_at <= now:
            return None
        if record.role == ADMIN:
            if not secret_equal(record.key_id, self.admin_fingerprint):
                return None
        elif record.role != TENANT or (record.key_revoked_at is not None
                                       and record.key_revoked_at <= now):
            return None
        principal = Principal(record.role, record.actor, record.tenant_id,
                              None if record.role == ADMIN else record.key_id)
        return Session(principal, record.expires_at, token, record.csrf)

    def end(self, session: Session) -> None:
        """Sign out: the cookie stops working everywhere, at once."""
        self.store.end_session(hash_key(session.token))

    @staticmethod
    def check_csrf(session: Session, value: str | None) -> bool:
        return secret_equal(value, session.csrf)


def new_login_nonce() -> str:
    """The double-submit value of the sign-in form (a cookie and a hidden field)."""
    return secrets.token_urlsafe(24)


def login_nonce_ok(cookie: str | None, field: str | None) -> bool:
    return isinstance(cookie, str) and secret_equal(field, cookie)
