"""Response headers every answer carries, and an access log that never records a secret.

Both are cheap on the hot path: the headers are added by a pure ASGI wrapper around
``send`` (no ``BaseHTTPMiddleware``, no body buffering), and the log filter only touches a
line whose query string names a credential-looking parameter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Added when the response does not set them itself (the console sets a stricter CSP).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)

# A query parameter whose name contains one of these is a credential: its value is masked.
_SECRET_NAMES = re.compile(
    r"(key|token|secret|passw|pwd|auth|session|signature|csrf|nonce|credential|bearer)",
    re.IGNORECASE)
_PARAM = re.compile(r"([^&=?#]+)=([^&#]*)")
REDACTED = "[redacted]"


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response (``/docs`` cannot
    be framed, no response is content-sniffed), keeping any the app already set."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def redact_query(path: str) -> str:
    """``/x?api_key=abc&q=1`` -> ``/x?api_key=[redacted]&q=1`` (pure, for log lines)."""
    if "?" not in path:
        return path
    head, _, query = path.partition("?")
    return head + "?" + _PARAM.sub(
        lambda m: f"{m[1]}={REDACTED}" if _SECRET_NAMES.search(m[1]) else m[0], query)


class RedactingFilter(logging.Filter):
    """Masks credential-looking query parameters in uvicorn's access log lines.

    uvicorn logs ``(client, method, path_with_query, http_version, status)`` as the
    record's args; only the path is rewritten, the line keeps its format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) \
                and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def install_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactingFilter` to the access logger once per process."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
