"""The names the package's config layer exports, re-exported from where they now live.

The config layer is split along its seams: :mod:`m11_tenant.catalog` (models and plans from
``data/``), :mod:`m11_tenant.ids` (tenant ids), :mod:`m11_tenant.model` (``TenantConfig``,
validation, merge/replace), :mod:`m11_tenant.diff` (config diffs) and
:mod:`m11_tenant.strict_json` (the strict JSON parser). ``m11_tenant.schema`` keeps every
name importable from here for existing callers; new code imports from those modules.
"""

from __future__ import annotations

from m11_tenant.catalog import DATA_DIR, PROVIDERS, Catalog, ModelInfo, Plan, load_catalog
from m11_tenant.diff import config_diff, flatten_config
from m11_tenant.ids import RESERVED_TENANT_IDS, TENANT_ID_RULE, validate_tenant_id
from m11_tenant.model import (
    BRANDING_FIELDS,
    CONFIG_FIELDS,
    DEFAULT_COST_ALERT_THRESHOLDS,
    DEFAULT_TEMPLATE,
    MAX_COST_ALERTS,
    MAX_QUERY_LOG_SIZE,
    MAX_RETRIES_LIMIT,
    PLATFORM_OWNED_FIELDS,
    Branding,
    TenantConfig,
    apply_update,
    to_config_error,
    validate_config,
)
from m11_tenant.strict_json import (
    MAX_BODY_BYTES,
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    parse_json_object,
)

__all__ = [
    "BRANDING_FIELDS", "CONFIG_FIELDS", "DATA_DIR", "DEFAULT_COST_ALERT_THRESHOLDS",
    "DEFAULT_TEMPLATE", "MAX_BODY_BYTES", "MAX_COST_ALERTS", "MAX_INT_DIGITS", "MAX_JSON_DEPTH",
    "MAX_QUERY_LOG_SIZE", "MAX_RETRIES_LIMIT", "PLATFORM_OWNED_FIELDS", "PROVIDERS",
    "RESERVED_TENANT_IDS", "TENANT_ID_RULE", "Branding", "Catalog", "ModelInfo", "Plan",
    "TenantConfig", "apply_update", "config_diff", "flatten_config", "load_catalog",
    "parse_json_object", "to_config_error", "validate_config", "validate_tenant_id",
]
