"""Console sign-in: a signed, expiring session token in a cookie, and CSRF tokens tied to it.

Why a signed token and not the key itself or a server-side session table: the key is a
long-lived credential, so it is checked once at sign-in and never stored in the browser;
the cookie carries only who signed in and until when, signed with HMAC-SHA256 under a
secret derived from the admin key. Nothing is kept on the server, so every ``serve``
worker (they share ``M11_ADMIN_KEY``) accepts the same cookie and a restart does not sign
anyone out. The price: signing out deletes the cookie but cannot revoke a copied token
before it expires (``SESSION_SECONDS``); changing the admin key revokes them all.

CSRF: every form carries ``csrf_token(session)``, an HMAC of the session token, checked in
constant time (the synchronizer-token pattern without server state). The cookie is also
``SameSite=Strict``, so a cross-site form post arrives without it in current browsers.
The sign-in form, which has no session yet, uses a double-submit cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from m11_tenant.api.auth import ADMIN, TENANT, Principal
from m11_tenant.text import secret_equal

SESSION_COOKIE = "m11_console"
LOGIN_COOKIE = "m11_console_login"
SESSION_SECONDS = 8 * 3600
MAX_TOKEN_CHARS = 1000


@dataclass(frozen=True)
class Session:
    """A verified sign-in: who (``principal``), until when, and the cookie value itself."""

    principal: Principal
    expires: int
    token: str


class SessionSigner:
    """Issues and verifies session tokens and their CSRF tokens (pure: no I/O, no state)."""

    def __init__(self, secret: str, *, lifetime: int = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time):
        # A key of its own, so a session signature is never usable as anything else.
        self._key = hmac.new(secret.encode("utf-8"), b"m11 console session v1",
                             hashlib.sha256).digest()
        self.lifetime, self._clock = lifetime, clock

    def issue(self, principal: Principal) -> Session:
        expires = int(self._clock()) + self.lifetime
        payload = {"r": principal.role, "a": principal.actor, "t": principal.tenant_id,
                   "e": expires, "n": secrets.token_urlsafe(8)}
        body = base64.urlsafe_b64encode(
            json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        token = f"{body}.{self._sign(b's:' + body.encode())}"
        return Session(principal, expires, token)

    def read(self, token: str | None) -> Session | None:
        """The session in ``token``, or None when absent, forged, malformed or expired."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        body, signature = token.split(".")
        if not secret_equal(signature, self._sign(b"s:" + body.encode("utf-8", "replace"))):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            role, actor, tenant, expires = payload["r"], payload["a"], payload["t"], payload["e"]
        except (ValueError, binascii.Error, KeyError, TypeError):
            return None
        if role not in (ADMIN, TENANT) or not isinstance(expires, int):
            return None
        if expires <= self._clock():
            return None
        return Session(Principal(role, str(actor), tenant), expires, token)

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"c:" + session.token.encode())

    def check_csrf(self, session: Session, value: str | None) -> bool:
        return secret_equal(value, self.csrf_token(session))

    def _sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


def new_login_nonce() -> str:
    """The double-submit value of the sign-in form (a cookie and a hidden field)."""
    return secrets.token_urlsafe(24)


def login_nonce_ok(cookie: str | None, field: str | None) -> bool:
    return isinstance(field, str) and secret_equal(cookie, field)
