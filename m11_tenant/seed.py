"""Example tenants from ``data/tenants.json``, written through the repository like any change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import DATA_DIR


@dataclass(frozen=True)
class ExampleTenant:
    tenant_id: str
    description: str
    config: dict[str, Any]


def load_example_tenants(path: Path = DATA_DIR / "tenants.json") -> list[ExampleTenant]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [ExampleTenant(t["tenant_id"], t["description"], t["config"]) for t in doc["tenants"]]


def seed_tenants(repo: TenantConfigRepository, *, overwrite: bool = False,
                 path: Path = DATA_DIR / "tenants.json") -> list[str]:
    """Store the example tenants; existing ones are kept unless ``overwrite``.

    Returns the ids that were written.
    """
    stored = set(repo.iter_tenants())
    written = []
    for tenant in load_example_tenants(path):
        if tenant.tenant_id in stored and not overwrite:
            continue
        repo.update_config(tenant.tenant_id, tenant.config, merge=False, actor="seed",
                           reason="example tenant from data/tenants.json")
        written.append(tenant.tenant_id)
    return written
