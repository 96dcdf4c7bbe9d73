"""Request bodies read as raw bytes and parsed strictly, never coerced by a framework.

:func:`read_body` is the one capped reader (size and time) that the API's JSON and the
console's forms both go through.

FastAPI's body parameters would parse with ``json.loads`` (NaN accepted, duplicate keys
silently merged) before the route authenticates its caller; here the bytes go to
:func:`m11_tenant.schema.parse_json_object` (duplicate keys, NaN, size and depth caps, the
text policy) inside the route, and the object to a strict request model of
:mod:`m11_tenant.api.models` (``RequestModel.parse``). The config inside is validated by
the repository, as every write is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from m11_tenant.errors import FieldError
from m11_tenant.schema import parse_json_object
from m11_tenant.web.errors import HttpError

JSON_TYPES = ("application/json",)


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object: 415 for another content type, 413 above ``max_bytes``."""
    media = media_type(request)
    if media not in JSON_TYPES and not (media.startswith("application/")
                                        and media.endswith("+json")):
        shown = media or "none"
        raise HttpError(415, "unsupported_media_type",
                        f"send the body as JSON with 'Content-Type: application/json' "
                        f"(got {shown[:60]})")
    return parse_json_object(await read_body(request, max_bytes), max_bytes=max_bytes)


def media_type(request: Request) -> str:
    """The request's ``Content-Type`` without its parameters, lowercased ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body: 413 above ``max_bytes``, 408 when it takes longer than the app's
    ``m11_body_timeout`` (a client trickling its body must not hold a worker forever)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) <= 20 \
            and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    timeout = request.app.state.ctx.settings.m11_body_timeout
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(size, max_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise HttpError(408, "request_timeout",
                        f"the request body did not arrive within {timeout:g} seconds; send it "
                        "again on a faster connection", headers={"Connection": "close"}) from None
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> HttpError:
    return HttpError(413, "payload_too_large",
                     f"body is at least {size} bytes; the limit is {limit}",
                     fields=[FieldError("body", f"the limit is {limit} bytes", "too_large")])
