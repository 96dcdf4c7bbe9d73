"""Prompt templates: parse, validate and render, without ``str.format``.

A tenant's template is stored text that a platform fills in on every query, so it is
treated as untrusted. ``str.format`` would be an information leak
(``{query.__class__.__mro__}``) and a denial of service (``{query:>100000000}``); this
module has its own tiny language instead:

* ``{name}`` is a placeholder, ``name`` a bare ASCII identifier: ``query``, ``context`` or a
  variable the tenant declared in ``prompt_variables``;
* ``{{`` and ``}}`` are a literal ``{`` and ``}``;
* nothing else: no attribute access, indexing, conversions, format specs, positional or
  empty fields, spaces inside braces, nor another engine's statements (``{% ... %}``).
  ``$`` is an ordinary character, so ``$query`` is inert text and ``${price}`` is a ``$``
  followed by the ``{price}`` placeholder; ``{{ name }}`` is the literal text ``{ name }``.

Rendering is a single pass over the parsed segments: a value is data and is never read
as a template, so braces or ``$query`` inside a value stay as they are.

Every refusal is a :class:`~m11_tenant.errors.TemplateError` whose message names the
problem and the fix, built only from the input (stable in notebooks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from m11_tenant.errors import TemplateError
from m11_tenant.guard import check_injection, find_forbidden_character

__all__ = [
    "MAX_PLACEHOLDERS",
    "MAX_RENDERED_CHARS",
    "MAX_TEMPLATE_CHARS",
    "MAX_VARIABLES",
    "MAX_VARIABLE_CHARS",
    "MAX_VARIABLE_NAME_CHARS",
    "RESERVED_NAMES",
    "LiteralText",
    "ParsedTemplate",
    "Placeholder",
    "compose_for_guard",
    "escape_braces",
    "parse_template",
    "render_template",
    "validate_prompt_variables",
    "validate_template",
]

MAX_TEMPLATE_CHARS = 2000
MAX_PLACEHOLDERS = 20  # occurrences, not distinct names: bounds how often a value repeats
MAX_VARIABLES = 20
MAX_VARIABLE_CHARS = 500
MAX_VARIABLE_NAME_CHARS = 64
# Retrieved context is the big part of a prompt; this leaves room for it while refusing
# a template that repeats {context} until the prompt explodes.
MAX_RENDERED_CHARS = 100_000
RESERVED_NAMES = frozenset({"query", "context"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = "prompt_template"


@dataclass(frozen=True)
class LiteralText:
    """Text copied to the output as is (``{{``/``}}`` already turned into braces)."""

    text: str


@dataclass(frozen=True)
class Placeholder:
    """A ``{name}`` placeholder."""

    name: str


@dataclass(frozen=True)
class ParsedTemplate:
    """A template that parsed: its source and its literal and field segments, in order."""

    source: str
    segments: tuple[LiteralText | Placeholder, ...]

    @cached_property
    def placeholders(self) -> frozenset[str]:
        """The distinct placeholder names used."""
        return frozenset(s.name for s in self.segments if isinstance(s, Placeholder))

    @property
    def field_count(self) -> int:
        """How many placeholders occur (a name used twice counts twice)."""
        return sum(isinstance(s, Placeholder) for s in self.segments)


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _fail(message: str, kind: str, field: str = _FIELD) -> TemplateError:
    return TemplateError(message, field=field, type=kind)


def escape_braces(text: str) -> str:
    """Return ``text`` as a template that renders to exactly ``text`` (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def parse_template(template: str) -> ParsedTemplate:
    """Split a template into literal text and ``{name}`` fields; syntax only.

    Names are not checked against any declaration here (see :func:`validate_template`).

    Raises:
        TemplateError: on anything but ``{name}``, ``{{`` and ``}}``; the message says
            which construct was found, where, and what to write instead.
    """
    if not isinstance(template, str):
        raise _fail(f"the template must be a string, got {type(template).__name__}", "type")
    segments: list[LiteralText | Placeholder] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch == "}":
            if template.startswith("}}", i):
                text.append("}")
                i += 2
                continue
            raise _fail(f"single '}}' at position {i} closes nothing; write '}}}}' for a "
                        "literal brace", "template_syntax")
        if ch != "{":
            text.append(ch)
            i += 1
            continue
        if template.startswith("{{", i):
            text.append("{")
            i += 2
            continue
        name, end = _read_field(template, i)
        if text:
            segments.append(LiteralText("".join(text)))
            text = []
        segments.append(Placeholder(name))
        i = end
    if text:
        segments.append(LiteralText("".join(text)))
    return ParsedTemplate(template, tuple(segments))


def _read_field(template: str, start: int) -> tuple[str, int]:
    """Read ``{name}`` at ``start``; return the name and the index after ``}``."""
    close = template.find("}", start)
    if close == -1:
        raise _fail(f"unclosed '{{' at position {start}: close the placeholder with '}}', "
                    "or write '{{' for a literal brace", "template_syntax")
    match = _IDENTIFIER.match(template, start + 1)
    name = match.group() if match else ""
    nxt = template[start + 1 + len(name)]
    where = f"{_show(template[start: close + 1])} at position {start}"
    if name and nxt == "}":
        return name, close + 1
    if not name:
        first = template[start + 1]
        if first == "%":
            raise _fail(f"template-engine statement {where}: only {{name}} placeholders "
                        "exist here (no loops, conditions or expressions)",
                        "template_syntax")
        if first == "#":
            raise _fail(f"template-engine comment {where}: only {{name}} placeholders exist "
                        "here; write '{{#' for a literal '{#'", "template_syntax")
        if first == "}" or first.isdigit():
            raise _fail(f"positional field {where}: name the value, e.g. {{query}}",
                        "template_syntax")
        if first.isspace():
            raise _fail(f"whitespace inside braces {where}: write the name with no spaces, "
                        "e.g. {query}", "template_syntax")
        raise _fail(f"{where} is not a placeholder: names are ASCII letters, digits and "
                    "'_', not starting with a digit; write '{{' for a literal brace",
                    "template_syntax")
    problems = {
        ".": "attribute access",
        "[": "indexing",
        "!": "a conversion",
        ":": "a format spec",
        "{": "a nested placeholder",
    }
    if nxt in problems:
        raise _fail(f"{problems[nxt]} in {where} is not allowed: use the bare name "
                    f"{{{name}}}", "template_syntax")
    if nxt.isspace():
        raise _fail(f"whitespace inside braces {where}: write {{{name}}} with no spaces",
                    "template_syntax")
    raise _fail(f"{where} is not a placeholder: names are ASCII letters, digits and '_' "
                f"(found {nxt!r} after {name!r})", "template_syntax")


def validate_template(template: str, variables: Iterable[str] | Mapping[str, str] = (), *,
                      guard: bool = True, semantic: bool = True) -> ParsedTemplate:
    """Check a template before it is stored, and return it parsed.

    Args:
        template: the tenant's template text.
        variables: the tenant's ``prompt_variables`` (names to values), or only their
            names. With the values, the injection guard reads the template as the model
            will: each value in its place and ``{query}``/``{context}`` left as sentinels
            (:func:`compose_for_guard`), so a link, an image or a phrase assembled from a
            variable and the template is judged whole, wherever it was split. With names
            only, it cannot, and refuses any link that embeds a live ``{placeholder}``.
        guard: run the injection guard (the costly part). Only configs read back from the
            store, which passed it when they were written, skip it.
        semantic: with the guard, run its semantic layer too (embeds each new sentence).

    Raises:
        TemplateError: over :data:`MAX_TEMPLATE_CHARS` or :data:`MAX_PLACEHOLDERS`, a
            forbidden character, bad syntax, no ``{query}``, an undeclared placeholder, or
            text the injection guard refuses.
    """
    if not isinstance(template, str):
        raise _fail(f"the template must be a string, got {type(template).__name__}", "type")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise _fail(f"the template has {len(template)} characters, over the limit of "
                    f"{MAX_TEMPLATE_CHARS}; shorten it", "too_long")
    bad_char = find_forbidden_character(template)
    if bad_char:
        raise _fail(f"the template contains {bad_char}", "forbidden_character")
    parsed = parse_template(template)
    if parsed.field_count > MAX_PLACEHOLDERS:
        raise _fail(f"the template uses {parsed.field_count} placeholders, over the limit of "
                    f"{MAX_PLACEHOLDERS}; use fewer", "too_many_placeholders")
    if "query" not in parsed.placeholders:
        hint = (" ('{{query}}' is a literal '{query}': use single braces)"
                if "{{query}}" in template.replace(" ", "") else "")
        raise _fail("the template must contain {query}, where the user's question goes"
                    + hint, "missing_query")
    declared = set(variables)
    unknown = sorted(parsed.placeholders - RESERVED_NAMES - declared)
    if unknown:
        names = ", ".join("{" + name + "}" for name in unknown)
        raise _fail(f"unknown placeholder {names}: declare it in prompt_variables, or use "
                    "{query} or {context}", "unknown_placeholder")
    if guard:
        _guard_template(parsed, variables, semantic)
    return parsed


def compose_for_guard(parsed: ParsedTemplate, values: Mapping[str, str]) -> str:
    """The template as the model will read it, minus the per-request parts: each
    variable's value in its place, ``{query}`` and ``{context}`` written as they are (the
    guard's link rules treat them as request data)."""
    return "".join(segment.text if isinstance(segment, LiteralText)
                   else values.get(segment.name, "{" + segment.name + "}")
                   for segment in parsed.segments)


def _guard_template(parsed: ParsedTemplate, variables: Iterable[str] | Mapping[str, str],
                    semantic: bool) -> None:
    if not isinstance(variables, Mapping):
        finding = check_injection(parsed.source, template=True, semantic=semantic)
        if finding is not None:
            raise _fail(f"the template contains {finding.reason}: {finding.advice}",
                        "injection")
        return
    finding = check_injection(compose_for_guard(parsed, variables), semantic=semantic)
    if finding is None:
        return
    if check_injection(compose_for_guard(parsed, {}), semantic=semantic) is None:
        # only the whole is refused
        raise _fail(f"the template with its prompt_variables filled in contains "
                    f"{finding.reason}: {finding.advice}", "injection")
    raise _fail(f"the template contains {finding.reason}: {finding.advice}", "injection")


def validate_prompt_variables(variables: Mapping[str, str], *,
                              guard: bool = True) -> dict[str, str]:
    """Check a tenant's prompt variables before they are stored; return a plain copy.

    ``guard=False`` skips the injection guard, as for :func:`validate_template`.

    Keys are ASCII identifiers of at most :data:`MAX_VARIABLE_NAME_CHARS` characters, not
    starting with ``_`` and never ``query`` or ``context``. Values are plain strings of at
    most :data:`MAX_VARIABLE_CHARS` characters; ``\\n`` and ``\\t`` are allowed, other
    control, bidi and tag characters are not; each value passes the injection guard.

    Raises:
        TemplateError: naming the variable (``field="prompt_variables.<key>"``).
    """
    if not isinstance(variables, Mapping):
        raise _fail(f"prompt_variables must be an object of names to strings, got "
                    f"{type(variables).__name__}", "type", "prompt_variables")
    if len(variables) > MAX_VARIABLES:
        raise _fail(f"{len(variables)} prompt variables, over the limit of {MAX_VARIABLES}",
                    "too_many_variables", "prompt_variables")
    clean: dict[str, str] = {}
    for key, value in variables.items():
        _check_variable_name(key)
        field = f"prompt_variables.{key}"
        if not isinstance(value, str):
            raise _fail(f"the value of {key!r} must be a string, got "
                        f"{type(value).__name__}", "type", field)
        if len(value) > MAX_VARIABLE_CHARS:
            raise _fail(f"the value of {key!r} has {len(value)} characters, over the limit "
                        f"of {MAX_VARIABLE_CHARS}; shorten it", "too_long", field)
        bad_char = find_forbidden_character(value)
        if bad_char:
            raise _fail(f"the value of {key!r} contains {bad_char}",
                        "forbidden_character", field)
        finding = check_injection(value) if guard else None
        if finding is not None:
            raise _fail(f"the value of {key!r} contains {finding.reason}: {finding.advice}",
                        "injection", field)
        clean[key] = value
    return clean


def _check_variable_name(key: object) -> None:
    # A bad key is reported on the mapping itself: the key may be empty or hold
    # characters that do not belong in a field path.
    if not isinstance(key, str):
        raise _fail(f"variable names must be strings, got {type(key).__name__}", "type",
                    "prompt_variables")
    if not _IDENTIFIER.fullmatch(key) or len(key) > MAX_VARIABLE_NAME_CHARS:
        raise _fail(f"variable name {_show(key)} is not allowed: use ASCII letters, digits "
                    f"and '_', starting with a letter, at most {MAX_VARIABLE_NAME_CHARS} "
                    "characters", "variable_name", "prompt_variables")
    if key.startswith("_"):
        raise _fail(f"variable name {key!r} starts with '_', which is reserved; rename it",
                    "variable_name", "prompt_variables")
    if key in RESERVED_NAMES:
        raise _fail(f"{key!r} is filled in by the pipeline on every query and cannot be a "
                    "prompt variable; rename it (e.g. 'default_" + key + "')",
                    "reserved_name", "prompt_variables")


@lru_cache(maxsize=256)
def _validated(template: str, variables: tuple[tuple[str, str], ...]) -> ParsedTemplate:
    # A pipeline renders the same stored template on every query (sometimes several times
    # while it fits the context window); the guard need not run again each time. Refusals
    # raise, and lru_cache does not keep those. The rule layers only: the semantic layer
    # ran when the config was written, and embedding a template on its first render in
    # each process would put model time on the query path.
    return validate_template(template, dict(variables), semantic=False)


def render_template(
    template: str | ParsedTemplate,
    *,
    query: str,
    context: str,
    variables: Mapping[str, str],
) -> str:
    """Fill the placeholders in one pass; values are copied as text, never re-read.

    A string template is validated first (:func:`validate_template` with the given
    variables, the guard's rule layers but not its semantic layer; the result is cached per
    template and variables); a :class:`ParsedTemplate` is trusted as parsed.

    Raises:
        TemplateError: a placeholder has no value, a value is not a string, or the result
            would exceed :data:`MAX_RENDERED_CHARS`.
    """
    if not isinstance(template, (str, ParsedTemplate)):
        raise _fail(f"the template must be a string, got {type(template).__name__}", "type")
    for name, value in variables.items():
        if not isinstance(value, str):
            raise _fail(f"the value for {{{name}}} must be a string, got "
                        f"{type(value).__name__}", "type")
    parsed = (template if isinstance(template, ParsedTemplate)
              else _validated(template, tuple(sorted(variables.items()))))
    values: dict[str, object] = {**variables, "query": query, "context": context}
    pieces: list[str] = []
    total = 0
    for segment in parsed.segments:
        if isinstance(segment, LiteralText):
            piece = segment.text
        else:
            if segment.name not in values:
                raise _fail(f"no value for placeholder {{{segment.name}}}: declare it in "
                            "prompt_variables", "unknown_placeholder")
            value = values[segment.name]
            if not isinstance(value, str):
                raise _fail(f"the value for {{{segment.name}}} must be a string, got "
                            f"{type(value).__name__}", "type")
            piece = value
        total += len(piece)
        if total > MAX_RENDERED_CHARS:
            raise _fail(f"the rendered prompt would exceed {MAX_RENDERED_CHARS} characters; "
                        "shorten the query, the context or the variables, or use "
                        "{context} once", "rendered_too_long")
        pieces.append(piece)
    return "".join(pieces)
