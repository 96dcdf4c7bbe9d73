"""One policy for every free-text field, and one way to compare secrets.

Free text (reasons, questions, prompt templates and variables, URLs, form fields, the
tenant lists of a bulk change, any string inside a JSON body) reaches databases, logs,
HTML pages and tokenizers. Three kinds of character break one of those or mislead a
reader, so they are refused wherever text comes in, never stripped or replaced:

- lone surrogates (U+D800-U+DFFF): not encodable as UTF-8, so a driver or tokenizer fails;
- control characters (C0, DEL, C1), NUL included: PostgreSQL refuses NUL, SQLite stores it
  and a page then carries it raw. Newline and tab are allowed only in multi-line text;
- bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder
  how a log line or an audit entry is displayed ("Trojan Source" spoofing).

Pure: no I/O. The error is a :class:`ConfigValidationError` on the field, a 400/422.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any

from m11_tenant.errors import ConfigValidationError, FieldError

_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_MULTI_LINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
TEXT_POLICY = "text_policy"


def _kind(ch: str) -> str:
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate (not valid Unicode text)"
    if code == 0:
        return "a NUL character"
    if 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069:
        return "a bidi override (it reorders how the text is displayed)"
    if ch in "\n\t":
        return "a line break or tab (this field is one line)"
    return "a control character"


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """What is wrong with ``text`` under the policy, or None when it is acceptable."""
    match = (_MULTI_LINE if multiline else _SINGLE_LINE).search(text)
    if match is None:
        return None
    return (f"contains {_kind(match[0])}, U+{ord(match[0]):04X} at position {match.start()}; "
            "remove it and send plain text")


def check_text(text: str, field: str, *, multiline: bool = False) -> str:
    """``text`` unchanged when it follows the policy.

    Raises:
        ConfigValidationError: on ``field``, type ``text_policy``.
    """
    problem = text_problem(text, multiline=multiline)
    if problem is not None:
        raise ConfigValidationError(FieldError(field, problem, TEXT_POLICY))
    return text


#: Longest reason (why a change was made, for the audit log) any entry point accepts.
MAX_REASON_CHARS = 500


def reason_problem(reason: str) -> tuple[str, str] | None:
    """What is wrong with ``reason`` (one line of plain text, at most
    ``MAX_REASON_CHARS``) as ``(message, error type)``, or None. The one rule behind the
    API's ``Reason`` type and the console's :func:`check_reason`."""
    if len(reason) > MAX_REASON_CHARS:
        return f"String should have at most {MAX_REASON_CHARS} characters", "string_too_long"
    problem = text_problem(reason)
    return None if problem is None else (problem, TEXT_POLICY)


def check_reason(value: object) -> str | None:
    """``value`` unchanged when it is a valid reason (or None), for callers that do not
    parse it with a request model (the console's forms).

    Raises:
        ConfigValidationError: on the field ``reason``.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigValidationError(FieldError("reason", "Input should be a valid string",
                                               "string_type"))
    found = reason_problem(value)
    if found is not None:
        raise ConfigValidationError(FieldError("reason", *found))
    return value


def json_text_errors(value: Any, path: str = "") -> list[FieldError]:
    """Every string in a parsed JSON value (keys included) checked as multi-line text.

    Multi-line is the loosest rule; fields that are one line (a reason, a URL) are checked
    again by their own validator.
    """
    errors: list[FieldError] = []
    if isinstance(value, str):
        problem = text_problem(value, multiline=True)
        if problem is not None:
            errors.append(FieldError(path or "body", problem, TEXT_POLICY))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = text_problem(str(key), multiline=False)
            if problem is not None:
                safe = f"{path}.<key>" if path else "<key>"
                errors.append(FieldError(safe, f"a field name {problem}", TEXT_POLICY))
                continue
            errors += json_text_errors(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += json_text_errors(item, f"{path}[{index}]")
    return errors


def secret_equal(given: object, expected: str) -> bool:
    """Compare a secret in constant time, as bytes, after checking it is a string at all.

    ``hmac.compare_digest`` raises ``TypeError`` for a ``str`` with non-ASCII characters,
    so a planted cookie or form field must never reach it as text.
    """
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))
