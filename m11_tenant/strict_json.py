"""The strict JSON parser every entry point uses for a config payload.

Python's ``json`` module accepts what a config must not: ``NaN``, ``Infinity``, ``1e999``
(as inf), duplicate keys (the last one wins), arbitrarily deep nesting and huge integer
literals. :func:`parse_json_object` refuses each of them with a message that names it.
Pure: bytes or text in, a dict or a :class:`~m11_tenant.errors.ConfigValidationError` out.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.text import json_text_errors

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8
# No config field needs more than a dozen digits; Python's int() refuses beyond 4,300 (a
# ValueError, not a JSON error), and parsing huge literals is quadratic: cap them first.
MAX_INT_DIGITS = 20


def parse_json_object(text: str | bytes, *, max_bytes: int = MAX_BODY_BYTES,
                      max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a JSON object strictly: size and depth capped, no duplicate keys, finite numbers.

    Python's ``json`` module accepts ``NaN``, ``Infinity``, ``1e999`` (as inf) and duplicate
    keys (last one wins); each of those is refused here with a message that names it, as
    is an integer of more than ``MAX_INT_DIGITS`` digits. Every string (keys too) follows
    the text policy of :mod:`m11_tenant.text`: no lone surrogates, control characters other
    than newline and tab, or bidi overrides (a 422 naming the field).

    Raises:
        ConfigValidationError: on the field ``body``.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > max_bytes:
        _body_error(f"body is {len(raw)} bytes; the limit is {max_bytes}", "too_large")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        _body_error("body is not valid UTF-8", "json_invalid")
    depth = _max_depth(decoded)
    if depth > max_depth:
        _body_error(f"JSON nests {depth} levels deep; the limit is {max_depth}", "too_deep")
    try:
        value = json.loads(decoded, object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constant, parse_float=_finite_float,
                           parse_int=_bounded_int)
    except _JsonRefused as exc:
        _body_error(str(exc), "json_invalid")
    except json.JSONDecodeError as exc:
        _body_error(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                    "json_invalid")
    if not isinstance(value, dict):
        _body_error(f"expected a JSON object, got {_json_type(value)}", "object_type")
    text_errors = json_text_errors(value)
    if text_errors:
        raise ConfigValidationError(text_errors)
    return value


class _JsonRefused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonRefused(f"duplicate key {key!r} in JSON object")
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise _JsonRefused(f"{name} is not a number JSON allows; use a finite number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _JsonRefused(f"integer of {len(text.lstrip('-'))} digits is out of range; "
                           f"use at most {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonRefused(f"number {text[:20]} is out of range; use a finite number")
    return value


def _max_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _json_type(value: object) -> str:
    return {str: "a string", bool: "a boolean", type(None): "null", list: "an array",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _body_error(message: str, kind: str) -> NoReturn:
    raise ConfigValidationError(FieldError("body", message, kind), "request body refused")
