"""Tenant-specific configuration of RAG pipelines: validated, stored, cached, versioned.

>>> from m11_tenant import open_repository
>>> repo = open_repository("sqlite:///:memory:")
>>> repo.update_config("tenant-x", {"temperature": 0.2}).version
1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from m11_tenant.errors import (
    ConfigNotFoundError,
    ConfigValidationError,
    InvalidTenantIdError,
    StoreUnavailableError,
    TenantConfigError,
    VersionConflictError,
)

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

# Imported on first use, so that importing a light submodule (the store's records, the
# errors) does not load pydantic, the templates and the guard through this package.
_LAZY = {"ResolvedConfig": "m11_tenant.repository",
         "TenantConfigRepository": "m11_tenant.repository",
         "TenantConfig": "m11_tenant.model",
         "open_repository": "m11_tenant.factory"}


def __getattr__(name: str) -> Any:
    """PEP 562: the names of ``_LAZY``, imported when first asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm11_tenant' has no attribute {name!r}")


if TYPE_CHECKING:
    from m11_tenant.factory import open_repository
    from m11_tenant.model import TenantConfig
    from m11_tenant.repository import ResolvedConfig, TenantConfigRepository
