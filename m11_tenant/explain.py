"""Explain a tenant's effective config: per field, its value, where it comes from, who may
change it, and what the plan allows.

Pure: it reads nothing itself. The caller passes the effective config and its version, the
audit log (newest first) and the kept history (newest first); :func:`explain` walks them.

A field's ``source`` is:

- ``default``: nothing stored for the tenant, or the value is the default and no write ever
  chose it (a tenant's first write stores every field, the untouched ones at their default);
- ``set``: the newest write that changed it, with ``set_by``, ``version``, ``at``, ``action``
  and ``reason`` from the audit log (or, if the audit lines read do not reach back that far,
  from the oldest kept version holding the value, without a reason).

The plan never silently caps a value: a write above the cap is refused, so ``plan_limit``
says what the plan allows and ``at_plan_cap`` whether the value sits at the cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from m11_tenant.schema import PLATFORM_OWNED_FIELDS, Plan, TenantConfig, flatten_config
from m11_tenant.store import AuditEntry, HistoryEntry

ADMIN_ONLY = "platform admin"
TENANT_OR_ADMIN = "tenant or platform admin"
_DEFAULTS = flatten_config(TenantConfig().model_dump())


def explain(tenant_id: str, config: TenantConfig, version: int, plan: Plan,
            audit: Sequence[AuditEntry], history: Sequence[HistoryEntry]) -> dict[str, Any]:
    """The explanation of ``config`` (version ``version``; 0 = nothing stored)."""
    values = flatten_config(config.model_dump())
    writes = [e for e in audit if e.version is not None and e.version <= version
              and e.action != "delete"] if version else []
    fields = {}
    for name, value in values.items():
        default = _DEFAULTS[name]
        item: dict[str, Any] = {"value": value, "default": default, "source": "default"}
        if version:
            item.update(_origin(name, value, default, writes, history))
        owned = name.split(".", 1)[0] in PLATFORM_OWNED_FIELDS
        item["who_may_change"] = ADMIN_ONLY if owned else TENANT_OR_ADMIN
        item.update(_plan_limit(name, value, plan))
        fields[name] = item
    return {
        "tenant_id": tenant_id, "version": version,
        "plan": {"name": plan.name, "allowed_models": list(plan.allowed_models),
                 "max_tokens_cap": plan.max_tokens_cap, "daily_queries": plan.daily_queries,
                 "monthly_budget_usd": plan.monthly_budget_usd},
        "fields": fields,
        "forbidden_for_tenant": sorted(PLATFORM_OWNED_FIELDS),
    }


def _origin(name: str, value: Any, default: Any, writes: Sequence[AuditEntry],
            history: Sequence[HistoryEntry]) -> Mapping[str, Any]:
    for entry in writes:  # newest first: the first that touched the field set it
        if name in entry.diff:
            old, _new = entry.diff[name]
            if old is None and value == default and entry.action != "rollback":
                return {"source": "default"}  # stored with the tenant's first write, untouched
            return {"source": "set", "set_by": entry.actor, "version": entry.version,
                    "at": entry.at, "action": entry.action, "reason": entry.reason}
    kept = None  # no audit line reaches back: the oldest kept version still holding it
    for entry in history:
        if flatten_config(entry.config).get(name, default) != value:
            break
        kept = entry
    if kept is None or value == default:
        return {"source": "default"}
    return {"source": "set", "set_by": kept.created_by, "version": kept.version,
            "at": kept.created_at, "action": kept.action, "reason": None}


def _plan_limit(name: str, value: Any, plan: Plan) -> dict[str, Any]:
    if name == "max_tokens":
        return {"plan_limit": f"at most {plan.max_tokens_cap} on the {plan.name} plan",
                "at_plan_cap": value == plan.max_tokens_cap}
    if name in ("model", "fallback_model"):
        return {"plan_limit": f"one of {', '.join(plan.allowed_models)} on the {plan.name} "
                "plan", "at_plan_cap": False}
    return {"plan_limit": None, "at_plan_cap": False}
