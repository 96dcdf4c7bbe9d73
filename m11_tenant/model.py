"""The tenant configuration: one pydantic object, validated once, every field bounded.

Everything that decides whether a config is acceptable lives here and is pure:
:class:`TenantConfig` and its rules (checked against a model catalog, by default the loaded
one), the translation of pydantic's errors into field-level ones, and merge-versus-replace.
Storage and caching only ever see configs that passed through :func:`validate_config`.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from m11_tenant import templates
from m11_tenant.catalog import Catalog, load_catalog
from m11_tenant.errors import (
    ConfigValidationError,
    FieldError,
    PlatformOwnedFieldError,
    TemplateError,
)
from m11_tenant.text import text_problem

_HEX_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Branding(BaseModel):
    """How the tenant's answers look: two ``#RRGGBB`` colours and an optional https logo."""

    model_config = _STRICT

    primary_color: str = Field("#1F6FEB", description="#RRGGBB")
    secondary_color: str = Field("#F6F8FA", description="#RRGGBB")
    logo_url: str | None = Field(None, max_length=500, description="https URL of a logo")

    @field_validator("primary_color", "secondary_color")
    @classmethod
    def _hex_color(cls, color: str) -> str:
        if not _HEX_COLOR.fullmatch(color):
            raise PydanticCustomError(
                "hex_color", "colour must be #RRGGBB (six hex digits), got {color}",
                {"color": repr(color[:20])},
            )
        return color

    @field_validator("logo_url")
    @classmethod
    def _https_only(cls, url: str | None) -> str | None:
        if url is None:
            return url
        _text_policy(url, multiline=False)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in url):
            raise PydanticCustomError(
                "https_url", "logo_url must be an https:// URL with a host, got {url}",
                {"url": url[:60]},
            )
        return url


DEFAULT_TEMPLATE = (
    "You are a helpful assistant. Answer using only the context below and cite passages "
    "by their [n] number.\n\nContext:\n{context}\n\nQuestion: {query}\nAnswer:"
)
MAX_RETRIES_LIMIT = 10
#: Most questions a tenant's query log may keep (``query_log_size``).
MAX_QUERY_LOG_SIZE = 1000
MAX_COST_ALERTS = 5  # thresholds per tenant: a few levels, not a spam channel
DEFAULT_COST_ALERT_THRESHOLDS = (50, 80, 100)  # percent of the plan's monthly budget


class TenantConfig(BaseModel):
    """A tenant's validated RAG configuration. Immutable: change it through the repository."""

    model_config = _STRICT

    plan: str = Field("free", description="free / starter / pro / enterprise (data/plans.json)")
    model: str = Field("gpt-3.5-turbo", description="a model of the catalog allowed by the plan")
    fallback_model: str | None = Field(None, description="used when the primary model fails")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(500, ge=1, le=4000, description="and at most the plan's cap")
    max_retries: int = Field(2, ge=0, le=MAX_RETRIES_LIMIT)
    top_k: int = Field(5, ge=1, le=20)
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="0 = keyword only, 1 = semantic only")
    enable_reranking: bool = False
    rerank_top_n: int | None = Field(None, ge=1, le=20, description="<= top_k; None follows top_k")
    prompt_variables: dict[str, str] = Field(default_factory=dict)
    prompt_template: str = Field(DEFAULT_TEMPLATE, max_length=templates.MAX_TEMPLATE_CHARS)
    branding: Branding = Field(default_factory=Branding)
    query_log_size: int = Field(0, ge=0, le=MAX_QUERY_LOG_SIZE,
                                description="questions kept for replay; 0 = no query log")
    cost_alert_thresholds: list[int] = Field(
        default_factory=lambda: list(DEFAULT_COST_ALERT_THRESHOLDS), max_length=MAX_COST_ALERTS,
        description="percent of the plan's monthly budget (1-100, ascending) at which a cost "
                    "alert is recorded; [] turns alerts off")

    @field_validator("plan")
    @classmethod
    def _known_plan(cls, plan: str, info: ValidationInfo) -> str:
        plans = _catalog(info).plans
        if plan not in plans:
            raise PydanticCustomError(
                "unknown_plan", "unknown plan {plan}; choose one of: {choices}",
                {"plan": repr(plan), "choices": ", ".join(plans)},
            )
        return plan

    @field_validator("model", "fallback_model")
    @classmethod
    def _known_model(cls, model: str | None, info: ValidationInfo) -> str | None:
        models = _catalog(info).models
        if model is not None and model not in models:
            raise PydanticCustomError(
                "unknown_model",
                "model {model} is not in the catalog (data/models.json); choose one of: {choices}",
                {"model": repr(model), "choices": ", ".join(models)},
            )
        return model

    @field_validator("prompt_variables")
    @classmethod
    def _safe_variables(cls, variables: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in variables.items():
            _text_policy(name, multiline=False)
            _text_policy(value, multiline=True)
        try:  # pydantic has already made sure every key and value is a str
            _checked_variables(tuple(variables.items()), _guarded(info))
        except TemplateError as exc:
            raise _as_custom(exc) from exc
        return variables

    @field_validator("cost_alert_thresholds")
    @classmethod
    def _ascending_percentages(cls, thresholds: list[int]) -> list[int]:
        if any(not 1 <= pct <= 100 for pct in thresholds):
            raise PydanticCustomError(
                "cost_alert_range", "each threshold is a percent of the monthly budget, "
                "1 to 100; got {thresholds}", {"thresholds": thresholds})
        if any(a >= b for a, b in itertools.pairwise(thresholds)):
            raise PydanticCustomError(
                "cost_alert_order", "list the thresholds in ascending order, each once "
                "(e.g. [50, 80, 100]); got {thresholds}", {"thresholds": thresholds})
        return thresholds

    @field_validator("prompt_template")
    @classmethod
    def _safe_template(cls, template: str, info: ValidationInfo) -> str:
        _text_policy(template, multiline=True)
        if "prompt_variables" not in info.data:
            return template  # the variables failed; their error is already reported
        try:
            _checked_template(template, tuple(info.data["prompt_variables"].items()),
                              _guarded(info))
        except TemplateError as exc:
            raise _as_custom(exc) from exc
        return template

    @model_validator(mode="after")
    def _fits_plan(self, info: ValidationInfo) -> TenantConfig:
        plan = _catalog(info).plan(self.plan)
        for field in ("model", "fallback_model"):
            name = getattr(self, field)
            if name is not None and name not in plan.allowed_models:
                raise PydanticCustomError(
                    "plan_model",
                    "{field} {model} is not allowed on the {plan} plan; allowed: {allowed}"
                    " (or change plan)",
                    {"field": field, "model": repr(name), "plan": plan.name,
                     "allowed": ", ".join(plan.allowed_models)},
                )
        if self.fallback_model == self.model:
            raise PydanticCustomError(
                "fallback_same", "fallback_model must differ from model, or be null",
                {"field": "fallback_model"},
            )
        if self.max_tokens > plan.max_tokens_cap:
            raise PydanticCustomError(
                "plan_cap", "max_tokens {value} exceeds the {plan} plan's cap of {cap}",
                {"field": "max_tokens", "value": self.max_tokens, "plan": plan.name,
                 "cap": plan.max_tokens_cap},
            )
        if self.rerank_top_n is not None and self.rerank_top_n > self.top_k:
            raise PydanticCustomError(
                "rerank_top_n",
                "rerank_top_n {value} must be <= top_k {top_k}; lower it or set it to null"
                " to follow top_k",
                {"field": "rerank_top_n", "value": self.rerank_top_n, "top_k": self.top_k},
            )
        return self

    @property
    def effective_rerank_top_n(self) -> int:
        """How many passages survive reranking: ``rerank_top_n``, or ``top_k`` when unset."""
        return self.top_k if self.rerank_top_n is None else self.rerank_top_n


CONFIG_FIELDS = tuple(TenantConfig.model_fields)
BRANDING_FIELDS = tuple(Branding.model_fields)


# The injection guard costs about a millisecond per text, and the same few templates are
# validated again on every cache read: remember the ones that passed (failures raise, and
# lru_cache does not store exceptions, so a refused text is checked afresh every time).
@lru_cache(maxsize=4096)
def _checked_template(template: str, variables: tuple[tuple[str, str], ...],
                      guard: bool) -> None:
    # With the values, the guard judges the template as composed (see validate_template).
    templates.validate_template(template, dict(variables), guard=guard)


@lru_cache(maxsize=4096)
def _checked_variables(items: tuple[tuple[str, str], ...], guard: bool) -> None:
    templates.validate_prompt_variables(dict(items), guard=guard)


def _catalog(info: ValidationInfo) -> Catalog:
    """The catalog the config is checked against: the one given to :func:`validate_config`,
    else the loaded one (so validation and a pipeline built on the same catalog agree)."""
    return (info.context or {}).get("catalog") or load_catalog()


def _guarded(info: ValidationInfo) -> bool:
    """False only for a config read back from the store (see :func:`validate_config`)."""
    return not (info.context or {}).get("stored", False)


def _text_policy(text: str, *, multiline: bool) -> None:
    """The package's text policy (:mod:`m11_tenant.text`) as a pydantic field error."""
    problem = text_problem(text, multiline=multiline)
    if problem is not None:
        raise PydanticCustomError("text_policy", "{problem}", {"problem": problem})


def _as_custom(exc: TemplateError) -> PydanticCustomError:
    err = exc.errors[0]
    return PydanticCustomError(err.type, "{reason}", {"reason": err.message, "field": err.field})


# --------------------------------------------------------------------------- validation


def validate_config(data: object, *, stored: bool = False,
                    catalog: Catalog | None = None) -> TenantConfig:
    """Validate a full config mapping strictly; missing fields take their defaults.

    Strict means: ``"0.7"`` is not a number, ``true`` is not an integer, ``5.0`` is not an
    integer, NaN/Infinity are refused, and unknown fields are errors (a typo must not fall
    back silently to a default).

    ``stored=True`` is for a config read back from the store: every rule is checked except
    the injection guard, which it passed when it was written and which costs about a
    millisecond per text — the difference between a 100,000-tenant warm start in seconds
    and in minutes. ``python -m m11_tenant check`` re-runs the guard on stored configs.

    ``catalog`` is the model catalog and plans to check against (default the loaded one,
    :func:`~m11_tenant.catalog.load_catalog`); a :class:`TenantConfig` given with a catalog
    is checked again against it.

    Raises:
        ConfigValidationError: listing every field that is wrong.
    """
    if isinstance(data, TenantConfig):
        if catalog is None:
            return data
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise ConfigValidationError(
            FieldError("config", f"expected an object of fields, got {type(data).__name__}",
                       "object_type")
        )
    try:
        context = ({"stored": stored, "catalog": catalog}
                   if stored or catalog is not None else None)
        return TenantConfig.model_validate(dict(data), strict=True, context=context)
    except ValidationError as exc:
        raise to_config_error(exc) from None


def to_config_error(exc: ValidationError) -> ConfigValidationError:
    """Translate pydantic's errors into field-level errors a learner can act on."""
    errors = []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        field = ctx.get("field") or ".".join(str(p) for p in err["loc"]) or "config"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = _unknown_field_message(err["loc"])
        elif err["type"] != "missing" and not ctx.get("field") and "input" in err:
            shown = shown_input(err["input"])
            if shown not in message:
                message += f" (got {shown})"
        errors.append(FieldError(field, message, err["type"]))
    return ConfigValidationError(errors)


def shown_input(value: Any) -> str:
    """A wrong value as an error message quotes it: its repr, cut to 40 characters."""
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _unknown_field_message(loc: tuple[Any, ...]) -> str:
    allowed = BRANDING_FIELDS if len(loc) > 1 and loc[0] == "branding" else CONFIG_FIELDS
    name = str(loc[-1])
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {name!r}; {hint}allowed: {', '.join(allowed)}"


#: Fields only the platform admin may change. The plan decides everything a tenant may
#: spend: its daily query quota, monthly budget, allowed models and ``max_tokens`` cap; the
#: tenant's own ``model`` and ``max_tokens`` are choices inside those bounds, so they stay
#: the tenant's. Enforced by :func:`apply_update` with ``platform=False``, which every
#: tenant write, replace, rollback and preview goes through (see the repository).
PLATFORM_OWNED_FIELDS: tuple[str, ...] = ("plan",)


def apply_update(current: TenantConfig, updates: object, *, merge: bool,
                 platform: bool = True, tenant_id: str = "",
                 catalog: Catalog | None = None) -> TenantConfig:
    """Return the config that ``updates`` produces, without storing anything.

    ``merge=True`` changes only the fields given (and, inside ``branding``, only the keys
    given); ``merge=False`` replaces the whole config, so every field not given goes back
    to its default. ``prompt_variables`` is one value: a merge replaces it whole.

    ``platform=False`` is a change made by the tenant itself: giving a platform-owned field
    a value other than its current one raises :class:`PlatformOwnedFieldError` (naming
    ``tenant_id``), and a replacement keeps the current values of those fields instead of
    resetting them to the defaults. ``catalog`` is what the result is checked against
    (see :func:`validate_config`).
    """
    if isinstance(updates, TenantConfig):
        updates = updates.model_dump()
    if not isinstance(updates, Mapping):
        raise ConfigValidationError(
            FieldError("config", f"expected an object of fields, got {type(updates).__name__}",
                       "object_type")
        )
    if not platform:
        owned = {name: getattr(current, name) for name in PLATFORM_OWNED_FIELDS}
        refused = [name for name, value in owned.items()
                   if name in updates and updates[name] != value]
        if refused:
            raise PlatformOwnedFieldError(tenant_id, refused)
        updates = {**updates, **owned}
    if not merge:
        return validate_config(updates, catalog=catalog)
    merged = current.model_dump()
    for key, value in updates.items():
        if key == "branding" and isinstance(value, Mapping):
            merged["branding"] = {**merged["branding"], **value}
        else:
            merged[key] = value
    return validate_config(merged, catalog=catalog)

