"""Tenant-specific configuration of RAG pipelines: validated, stored, cached, versioned.

>>> from m11_tenant import open_repository
>>> repo = open_repository("sqlite:///:memory:")
>>> repo.update_config("tenant-x", {"temperature": 0.2}).version
1
"""

from __future__ import annotations

from m11_tenant.errors import (
    ConfigNotFoundError,
    ConfigValidationError,
    InvalidTenantIdError,
    StoreUnavailableError,
    TenantConfigError,
    VersionConflictError,
)
from m11_tenant.factory import open_repository
from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
from m11_tenant.schema import TenantConfig

__all__ = [
    "ConfigNotFoundError",
    "ConfigValidationError",
    "InvalidTenantIdError",
    "ResolvedConfig",
    "StoreUnavailableError",
    "TenantConfig",
    "TenantConfigError",
    "TenantConfigRepository",
    "VersionConflictError",
    "open_repository",
]
