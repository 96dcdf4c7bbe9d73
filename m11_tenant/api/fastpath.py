"""``GET /config/{tenant_id}``'s hot path, answered before FastAPI's routing.

A known caller (see :meth:`~m11_tenant.web.auth.Authenticator.peek`: the admin key, or a
tenant key read less than half a second ago, not revoked, from an address not cooling
down) asking for a config this process's near cache holds needs no I/O at all. Through
FastAPI that answer still paid for the middleware stack, a walk over every route's regex,
the endpoint's parameters and a ``Response`` object: most of the time of a ~0.1 ms
request. :class:`ConfigFastPath` is a pure ASGI wrapper that sends such an answer itself,
as two ASGI messages whose bytes (body and every header, the security headers included)
were built once per cached version.

Everything else goes on to the app unchanged: another method or path, a caller that must
be looked up, throttled, refused or audited, a tenant that is not near-cached. So the
answers, refusals and error shapes are the full path's; the fast path only ever says 200,
with the same body, ``ETag`` and headers the full path would send, and records the same
metrics (the near-cache load histogram, the repository's per-source counts).
"""

from __future__ import annotations

import json
import time
from typing import Any

from m11_tenant.api.models import ConfigResponse
from m11_tenant.repository import ResolvedConfig
from m11_tenant.web.context import ApiContext
from m11_tenant.web.security import SECURITY_HEADERS, ASGIApp, Receive, Scope, Send

PREFIX = "/config/"
MAX_CACHED_ANSWERS = 10_000  # one per near-cached tenant; cleared whole if ever exceeded

Answer = tuple[ResolvedConfig, list[tuple[bytes, bytes]], bytes]  # cached object, headers, body


def json_bytes(content: Any) -> bytes:
    """What ``JSONResponse`` would send for ``content``, byte for byte."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def config_answer(resolved: ResolvedConfig) -> Answer:
    """A 200's headers and body for ``resolved``, headers in the full path's order
    (content-length, content-type, etag, then the security headers the middleware adds)."""
    body = json_bytes(ConfigResponse.of(resolved).model_dump(mode="json"))
    headers = [(b"content-length", str(len(body)).encode()),
               (b"content-type", b"application/json"),
               (b"etag", f'"{resolved.version}"'.encode()), *SECURITY_HEADERS]
    return resolved, headers, body


class ConfigFastPath:
    """ASGI middleware: a known caller's near-cache hit on ``GET /config/{tenant_id}``
    answered on the event loop with precomputed bytes; any other request goes to ``app``.

    The answers are kept per tenant next to the cached object they were built from: a new
    version (a write, an invalidation) is a new object, so a stale body is never sent.
    """

    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app, self.ctx = app, ctx
        self.answers: dict[str, Answer] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" \
                and scope["path"].startswith(PREFIX) and not scope.get("root_path"):
            answer = self._answer(scope)
            if answer is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": answer[1]})
                await send({"type": "http.response.body", "body": answer[2]})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> Answer | None:
        tenant_id = scope["path"][len(PREFIX):]
        if not tenant_id or "/" in tenant_id:  # another route (history, explain, ...)
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        client = scope.get("client")
        ctx = self.ctx
        caller = ctx.auth.peek(authorization, client[0] if client else "unknown")
        if caller is None or not (caller.is_admin or caller.tenant_id == tenant_id):
            return None
        started = time.perf_counter()
        resolved = ctx.repo.get_near(tenant_id)
        if resolved is None:
            return None
        answer = self.answers.get(tenant_id)
        if answer is None or answer[0] is not resolved:
            if len(self.answers) >= MAX_CACHED_ANSWERS:
                self.answers.clear()  # rare; the near cache holds the configs themselves
            answer = self.answers[tenant_id] = config_answer(resolved)
        ctx.metrics.near_load.observe(time.perf_counter() - started)
        return answer
