"""The config form: its fields derived from the schema, and a posted form turned into updates.

Nothing here decides whether a value is acceptable: the form only turns the strings a
browser sends into the JSON types the schema expects (``"0.7"`` -> ``0.7``) and leaves
anything it cannot read as the string that was typed, so the schema's own validation
(the same as every API write) refuses it with its own message. What was typed is kept
(``FormInput.values``) so a refused form comes back exactly as the user left it.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from annotated_types import Ge, Le, MaxLen

from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.schema import Branding, Catalog, TenantConfig
from m11_tenant.text import TEXT_POLICY, text_problem

# ASCII digits only: str.isdigit() and int() also take "²" or "١٢", which no one types
# into a version or a number field on purpose (and "²" makes int() fail).
_INT = re.compile(r"[+-]?[0-9]{1,12}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})"
                    r"(?:[eE][+-]?[0-9]{1,3})?")
FLOAT_STEP = 0.05
EXTRA_VARIABLE_ROWS = 2
MAX_FORM_FIELDS = 200
OTHER_INPUTS = ("reason", "question", "replay")  # inputs of the page that are not config fields

LABELS = {
    "plan": "Plan", "model": "Model", "fallback_model": "Fallback model",
    "temperature": "Temperature", "max_tokens": "Max tokens", "max_retries": "Max retries",
    "top_k": "Passages retrieved (top_k)", "alpha": "Keyword ↔ semantic (alpha)",
    "enable_reranking": "Rerank the retrieved passages", "rerank_top_n": "Keep after reranking",
    "prompt_variables": "Prompt variables", "prompt_template": "Prompt template",
    "branding.primary_color": "Primary colour", "branding.secondary_color": "Secondary colour",
    "branding.logo_url": "Logo URL", "query_log_size": "Questions kept for replay",
    "cost_alert_thresholds": "Cost alerts (% of the monthly budget)",
}
HINTS = {
    "temperature": "0 = focused and repeatable, 2 = most varied",
    "alpha": "0 = keyword only, 1 = semantic only",
    "rerank_top_n": "blank = keep top_k passages",
    "max_tokens": "at most the plan's cap",
    "fallback_model": "used when the primary model fails",
    "prompt_template": "must contain {context} and {query}; other {names} come from the "
                       "variables",
    "branding.primary_color": "#RRGGBB: the chat card's header",
    "branding.secondary_color": "#RRGGBB: the answer's background",
    "branding.logo_url": "https:// — shown in the chat card",
    "query_log_size": "0 = no query log; up to 1000 recent questions (e-mails and long "
                      "numbers redacted) for replaying a change",
    "cost_alert_thresholds": "ascending, comma-separated, e.g. 50, 80, 100; blank = no alerts",
}


@dataclass(frozen=True)
class FieldSpec:
    """One input of the form: its name (the schema's field path) and the schema's bounds."""

    name: str
    kind: str  # int, float, bool, choice, text, textarea, color, url, variables
    label: str
    hint: str = ""
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    optional: bool = False

    @property
    def step(self) -> float | int:
        return FLOAT_STEP if self.kind == "float" else 1

    @property
    def dom_id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


def _spec(name: str, info: Any) -> FieldSpec:
    annotation = info.annotation
    members = annotation.__args__ if isinstance(annotation, types.UnionType) else (annotation,)
    optional = type(None) in members
    base = next(a for a in members if a is not type(None))
    lo = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    hi = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    length = next((m.max_length for m in info.metadata if isinstance(m, MaxLen)), None)
    if name in ("plan", "model", "fallback_model"):
        kind = "choice"
    elif name == "prompt_template":
        kind = "textarea"
    elif name.endswith("_color"):
        kind = "color"
    elif name.endswith("_url"):
        kind = "url"
    else:
        kind = {int: "int", float: "float", bool: "bool", dict: "variables",
                list: "percentages"}.get(
            getattr(base, "__origin__", base), "text")
    return FieldSpec(name, kind, LABELS.get(name, name), HINTS.get(name, ""), lo, hi, length,
                     optional)


def field_specs() -> dict[str, FieldSpec]:
    """Every editable field of :class:`TenantConfig`, in the schema's order."""
    specs: dict[str, FieldSpec] = {}
    for name, info in TenantConfig.model_fields.items():
        if name == "branding":
            for sub, sub_info in Branding.model_fields.items():
                specs[f"branding.{sub}"] = _spec(f"branding.{sub}", sub_info)
        else:
            specs[name] = _spec(name, info)
    return specs


SPECS = field_specs()
GROUPS = (
    ("Plan and model", ("plan", "model", "fallback_model")),
    ("Generation", ("temperature", "max_tokens", "max_retries")),
    ("Retrieval", ("top_k", "alpha", "enable_reranking", "rerank_top_n")),
    ("Prompt", ("prompt_template", "prompt_variables")),
    ("Branding", ("branding.primary_color", "branding.secondary_color", "branding.logo_url")),
    ("Query log", ("query_log_size",)),
    ("Spending", ("cost_alert_thresholds",)),
)


@dataclass
class FormInput:
    """A posted form: the updates for the repository and the strings as typed."""

    updates: dict[str, Any]
    values: dict[str, Any]
    errors: list[FieldError] = field(default_factory=list)


def values_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dump as the form shows it (the strings an untouched form would post)."""
    values: dict[str, Any] = {}
    for name, spec in SPECS.items():
        value = (config.get("branding") or {}).get(name.split(".", 1)[1]) \
            if name.startswith("branding.") else config.get(name)
        if spec.kind == "variables":
            values[name] = [[k, v] for k, v in (value or {}).items()]
        elif spec.kind == "bool":
            values[name] = bool(value)
        else:
            values[name] = "" if value is None else _shown(value)
    return values


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return repr(value).removesuffix(".0") if value.is_integer() else repr(value)
    return str(value)


def checked_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Posted pairs with browser line breaks (CRLF) made LF, every name and value held
    to the text policy (:mod:`m11_tenant.text`): values may span lines, names may not.

    Raises:
        ConfigValidationError: naming each refused input.
    """
    checked, errors = [], []
    for name, value in pairs:
        text = value.replace("\r\n", "\n")
        if (problem := text_problem(name)) is not None:
            errors.append(FieldError("form", f"an input name {problem}", TEXT_POLICY))
        elif (problem := text_problem(text, multiline=True)) is not None:
            errors.append(FieldError(name, problem, TEXT_POLICY))
        checked.append((name, text))
    if errors:
        raise ConfigValidationError(errors)
    return checked


def ascii_int(text: str) -> int | None:
    """An integer typed with ASCII digits (an optional sign, at most 12 digits), else None."""
    return int(text) if _INT.fullmatch(text) else None


def parse_config_form(pairs: Iterable[tuple[str, str]]) -> FormInput:
    """Turn posted ``(name, value)`` pairs into a merge update (only the fields present).

    Form-level problems (a variable value without a name, a name twice) are returned as
    ``errors``; the values themselves are judged by the schema afterwards.
    """
    posted: dict[str, list[str]] = {}
    for name, value in pairs:
        posted.setdefault(name, []).append(value)
    updates: dict[str, Any] = {}
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, spec in SPECS.items():
        if spec.kind == "variables":
            if "var_name" not in posted and "var_value" not in posted:
                continue
            rows, variables, problems = _variables(posted)
            values[name], errors = rows, errors + problems
            updates[name] = variables
            continue
        if name not in posted:
            continue
        if spec.kind == "bool":
            values[name] = updates[name] = "true" in posted[name]
            continue
        text = posted[name][-1]
        values[name] = text
        value = _typed(spec, text)
        if name.startswith("branding."):
            updates.setdefault("branding", {})[name.split(".", 1)[1]] = value
        else:
            updates[name] = value
    return FormInput(updates, values, errors)


def _typed(spec: FieldSpec, text: str) -> Any:
    stripped = text.strip()
    if spec.optional and stripped == "":
        return None
    if spec.kind == "int" and (number := ascii_int(stripped)) is not None:
        return number
    if spec.kind == "float" and _FLOAT.fullmatch(stripped):
        value = float(stripped)
        return value if math.isfinite(value) else text
    if spec.kind in ("color", "url", "choice"):
        return stripped
    if spec.kind == "percentages":
        parts = [part.strip() for part in stripped.split(",")] if stripped else []
        # A part that is not a whole number stays text: the schema then names the field.
        return [int(p) for p in parts] if all(_INT.fullmatch(p) for p in parts) else text
    return text


def _variables(posted: Mapping[str, list[str]]) -> tuple[list[list[str]], dict[str, str],
                                                         list[FieldError]]:
    names, texts = posted.get("var_name", []), posted.get("var_value", [])
    rows = [[n, t] for n, t in zip(names, texts + [""] * (len(names) - len(texts)),
                                   strict=False)]
    variables: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, text in rows:
        key = name.strip()
        if not key:
            if text.strip():
                errors.append(FieldError("prompt_variables",
                                         f"the value {text[:30]!r} has no name; give it one "
                                         "or clear it", "missing"))
            continue
        if key in variables:
            errors.append(FieldError("prompt_variables", f"the name {key!r} appears twice; "
                                     "keep one", "duplicate"))
        variables[key] = text
    return rows, variables, errors


def _comparable(value: Any) -> Any:
    if isinstance(value, list):  # variable rows: blank rows are not part of the value
        return [list(r) for r in value if r[0].strip() or r[1].strip()]
    return value


def rebase(typed: Mapping[str, Any], base: Mapping[str, Any], latest: Mapping[str, Any]
           ) -> tuple[dict[str, Any], list[str]]:
    """Carry an edit made on config ``base`` over to ``latest`` (someone saved in between).

    The fields whose typed value differs from ``base`` are the user's changes and keep what
    was typed; every other field takes ``latest``'s value, so saving again does not quietly
    undo the other person's change. Returns the form values and the user's changed fields.
    """
    before, now = values_of(base), values_of(latest)
    changed = [name for name in SPECS if name in typed
               and _comparable(typed[name]) != _comparable(before[name])]
    return {**now, **{name: typed[name] for name in changed}}, changed


def form_text(value: Any) -> str:
    """A form value as one string for a table (variable rows as ``name = value`` lines)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(f"{k} = {v}" for k, v in _comparable(value)) or "(none)"
    return str(value) if value != "" else "(blank)"


def variable_rows(values: Mapping[str, Any]) -> list[list[str]]:
    """The variable rows to show: the filled ones, then a few blank ones to add more."""
    rows = [r for r in values.get("prompt_variables", []) if r[0].strip() or r[1].strip()]
    return rows + [["", ""]] * EXTRA_VARIABLE_ROWS


def plan_models(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """For the model lists: each plan's allowed models and max_tokens cap (from the catalog)."""
    return {name: {"models": list(plan.allowed_models), "cap": plan.max_tokens_cap}
            for name, plan in catalog.plans.items()}


def errors_by_field(errors: Iterable[FieldError]) -> dict[str, list[str]]:
    """Messages keyed by the input they belong next to (``prompt_variables.x`` goes with
    ``prompt_variables``); ``""`` collects those that belong to no input of the form."""
    placed: dict[str, list[str]] = {}
    for err in errors:
        head = err.field.split(".", 1)[0]
        key = err.field if err.field in SPECS or err.field in OTHER_INPUTS else (
            head if head in SPECS else "")
        placed.setdefault(key, []).append(err.message)
    return placed
