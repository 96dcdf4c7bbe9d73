"""Plan limits and prices: pure functions over the model catalog and the usage totals.

Order of the checks (cheapest, most actionable first): the plan exists; the model and the
fallback model are in the catalog and allowed by the plan; ``max_tokens`` is within the
plan's cap; the daily query quota; the monthly budget. A check that fails raises a
:class:`~m11_tenant.errors.QueryRefusedError` subclass whose message says what to change,
with ``retry_after`` (seconds) when waiting would help.

The daily quota and the monthly budget are enforced by the ledger's atomic gate
(:meth:`~m11_tenant.rag.ledger.UsageLedger.reserve_query`); :func:`usage_refusal` only
words the refusal. Budget semantics: a query is refused once the month's recorded spend has
reached the budget. The cost of a query is known only after its answer, so the queries
already running when the budget is reached still finish: a month can overshoot by their
cost (one query's per concurrent request) plus settlements not yet written (a few ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from m11_tenant.catalog import Catalog, ModelInfo, Plan, load_catalog
from m11_tenant.errors import BudgetExceededError, QueryRefusedError, QuotaExceededError
from m11_tenant.model import TenantConfig
from m11_tenant.rag.ledger import UsageTotals


@dataclass(frozen=True)
class CatalogView(Catalog):
    """The catalog, with refusals a learner can act on instead of ``KeyError``.

    A :class:`~m11_tenant.catalog.Catalog` itself, so the pipeline's catalog is also the one
    its configs are validated against (``validate_config(..., catalog=pipeline.catalog)``).
    """

    def model(self, name: str) -> ModelInfo:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise QueryRefusedError(
                f"model {name!r} is not in the model catalog (known: {known}); "
                "choose one of those in the tenant's config", detail={"model": name}
            ) from None

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(self.plans)
            raise QueryRefusedError(
                f"plan {name!r} does not exist (known: {known})", detail={"plan": name}
            ) from None


def default_catalog() -> CatalogView:
    """The loaded catalog (:func:`~m11_tenant.catalog.load_catalog`), with refusals."""
    return catalog_from(load_catalog())


def catalog_from(catalog: Catalog) -> CatalogView:
    """Wrap a :class:`~m11_tenant.catalog.Catalog` (anything with ``models``/``plans``)."""
    if isinstance(catalog, CatalogView):
        return catalog
    return CatalogView(dict(catalog.models), dict(catalog.plans))


def seconds_until_tomorrow(now: datetime) -> int:
    nxt = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((nxt - now).total_seconds()))


def seconds_until_next_month(now: datetime) -> int:
    first = date(now.year + (now.month == 12), now.month % 12 + 1, 1)
    nxt = datetime.combine(first, datetime.min.time(), UTC)
    return max(1, int((nxt - now).total_seconds()))


def check_static_limits(config: TenantConfig, catalog: CatalogView) -> Plan:
    """Model, fallback model and max_tokens against the config's plan; returns the plan.

    Raises ``QueryRefusedError`` naming the field to change. These are the limits a config
    validated earlier can still break (a plan edited, or a model retired, since it was saved).
    """
    plan = catalog.plan(config.plan)
    for field in ("model", "fallback_model"):
        name = getattr(config, field)
        if name is None:
            continue
        catalog.model(name)
        if name not in plan.allowed_models:
            raise QueryRefusedError(
                f"{field} {name!r} is not allowed on the {plan.name!r} plan "
                f"(allowed: {', '.join(plan.allowed_models)}); change the model or the plan",
                detail={"field": field, "model": name, "plan": plan.name},
            )
    if config.max_tokens > plan.max_tokens_cap:
        raise QueryRefusedError(
            f"max_tokens {config.max_tokens} is above the {plan.name!r} plan's cap of "
            f"{plan.max_tokens_cap}; lower it or change the plan",
            detail={"field": "max_tokens", "cap": plan.max_tokens_cap},
        )
    return plan


def usage_refusal(tenant_id: str, plan: Plan, totals: UsageTotals,
                  now: datetime) -> QueryRefusedError:
    """Why the gate refused a query: the daily quota (QuotaExceededError) or the monthly
    budget (BudgetExceededError), with ``retry_after`` = seconds until it resets."""
    quota_left = totals.queries_today < plan.daily_queries
    if quota_left and totals.cost_month_usd >= plan.monthly_budget_usd:
        return BudgetExceededError(
            f"tenant {tenant_id!r} has spent ${totals.cost_month_usd:.2f} of its "
            f"${plan.monthly_budget_usd:.2f} monthly budget on the {plan.name!r} plan; the "
            "budget resets on the 1st (UTC), or choose a cheaper model or upgrade the plan",
            retry_after=seconds_until_next_month(now),
            detail={"cost_month_usd": round(totals.cost_month_usd, 6),
                    "monthly_budget_usd": plan.monthly_budget_usd},
        )
    # Also when a slot was given back between the refusal and this read: the quota was full.
    return QuotaExceededError(
        f"tenant {tenant_id!r} has used its {plan.daily_queries} queries for today on the "
        f"{plan.name!r} plan; the quota resets at 00:00 UTC or upgrade the plan",
        retry_after=seconds_until_tomorrow(now),
        detail={"queries_today": totals.queries_today, "daily_queries": plan.daily_queries},
    )


def price(model: ModelInfo, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for this many tokens at the catalog's per-1k prices (rounded to 1e-8)."""
    cost = (prompt_tokens * model.input_usd_per_1k + completion_tokens * model.output_usd_per_1k)
    return round(cost / 1000.0, 8)
