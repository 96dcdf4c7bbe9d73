"""Request bodies read as raw bytes and parsed strictly, never coerced by a framework.

:func:`read_body` is the one capped reader (size and time) that the API's JSON and the
console's forms both go through.

FastAPI's body models would turn ``"0.7"`` into ``0.7`` and let duplicate keys through;
here the bytes go to :func:`m11_tenant.schema.parse_json_object` (duplicate keys, NaN,
size and depth caps) and the envelope's own fields are checked by type, with unknown
fields refused. The config inside is validated by the repository, as every write is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from m11_tenant.errors import ConfigValidationError, FieldError
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


def envelope(body: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check the top-level fields of a body: known names, exact JSON types, required ones.

    ``bool`` is never accepted where a number or a string is expected, and vice versa.

    Raises:
        ConfigValidationError: listing every wrong field (422).
    """
    errors = []
    for name, value in body.items():
        if name not in fields:
            errors.append(FieldError(name, f"unknown field {name!r}; allowed: "
                                     f"{', '.join(fields)}", "extra_forbidden"))
        elif not _is_instance(value, fields[name]):
            wanted = " or ".join(_JSON_NAMES[t] for t in fields[name])
            errors.append(FieldError(name, f"must be {wanted}", "type_error"))
    errors += [FieldError(name, "field required", "missing")
               for name in required if name not in body]
    if errors:
        raise ConfigValidationError(errors)
    return dict(body)


_JSON_NAMES = {str: "a string", bool: "true or false", dict: "an object", list: "an array",
               int: "an integer", type(None): "null"}


def _is_instance(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def string_list(body: Mapping[str, Any], name: str) -> list[str] | None:
    """A list-of-strings field (``None`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return None
    if not all(isinstance(item, str) for item in value):
        raise ConfigValidationError(FieldError(name, "must be an array of strings",
                                               "type_error"))
    return list(value)
