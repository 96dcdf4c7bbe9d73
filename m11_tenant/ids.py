"""Tenant ids: one documented rule, checked before an id touches a key, a path or a query."""

from __future__ import annotations

import re

from m11_tenant.errors import InvalidTenantIdError

TENANT_ID_RULE = (
    "3-64 characters: lowercase ASCII letters, digits, '_' or '-', starting with a letter "
    "or digit"
)
_TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{2,63}")
RESERVED_TENANT_IDS = frozenset(
    {"default", "admin", "root", "system", "api", "all", "audit", "config", "console",
     "docs", "health", "metrics", "none", "null", "tenants"}
)


def validate_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` unchanged if it follows the documented rule, else raise.

    Nothing is normalised (no lowercasing, no stripping): ``"ACME"`` and ``"acme\\n"`` are
    refused rather than silently turned into another tenant's key.

    Raises:
        InvalidTenantIdError: with the offending character and the rule.
    """
    if not isinstance(tenant_id, str):
        raise InvalidTenantIdError(f"tenant id must be a string, got {type(tenant_id).__name__}")
    if _TENANT_ID_RE.fullmatch(tenant_id):
        if tenant_id in RESERVED_TENANT_IDS:
            raise InvalidTenantIdError(f"tenant id {tenant_id!r} is reserved; choose another name")
        return tenant_id
    if not 3 <= len(tenant_id) <= 64:
        problem = f"has {len(tenant_id)} characters"
    elif not re.fullmatch(r"[a-z0-9]", tenant_id[0]):
        problem = f"starts with {tenant_id[0]!r}"
    else:
        bad = next(ch for ch in tenant_id if not re.fullmatch(r"[a-z0-9_-]", ch))
        problem = f"contains {bad!r}"
    shown = tenant_id if len(tenant_id) <= 40 else tenant_id[:37] + "..."
    raise InvalidTenantIdError(f"tenant id {shown!r} {problem}; use {TENANT_ID_RULE}")
