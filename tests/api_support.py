"""Shared helpers for tests/test_api*.py: an app on a given repository, keys, a rate clock."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from rag_support import FIXED_NOW, catalog, fixture_index

from m11_tenant.app import create_app
from m11_tenant.rag import RagPipeline
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import Settings

ADMIN_KEY = "m11a_test-admin-key-0123456789-abcdefXYZ"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class RateClock:
    """Seconds since the epoch for rate-limit windows, moved by hand."""

    def __init__(self, now: float = FIXED_NOW.timestamp()):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: TestClient
    repo: TenantConfigRepository
    app: FastAPI
    rate_clock: RateClock
    printed: list[str] = field(default_factory=list)

    def key_for(self, tenant_id: str) -> dict[str, str]:
        """Create a tenant key through the API and return its Authorization header."""
        response = self.client.post(f"/tenants/{tenant_id}/keys", headers=ADMIN)
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['key']}"}

    def write(self, tenant_id: str, config: dict[str, Any], headers: dict[str, str] = ADMIN,
              **body: Any):
        return self.client.post(f"/config/{tenant_id}", headers=headers,
                                json={"config": config, **body})

    def snapshot(self, tenant_id: str) -> tuple[Any, ...]:
        """Everything a write would change: the record, its history, its audit lines."""
        store = self.repo.store
        return (store.get(tenant_id), store.history(tenant_id), store.audit(tenant_id))


def make_pipeline(repo: TenantConfigRepository) -> RagPipeline:
    """The real pipeline on the 16-passage fixture corpus, offline, with a fixed clock."""
    return RagPipeline(repo, repo.store, index=fixture_index(), clock=lambda: FIXED_NOW,
                       catalog=catalog(), generation="offline")


def make_api(repo: TenantConfigRepository, **settings: Any) -> Api:
    clock = RateClock()
    printed: list[str] = []
    cfg = Settings(**{"m11_admin_key": ADMIN_KEY, "m11_rate_config_writes": "10/hour",
                      "m11_rate_previews": "20/hour", "m11_rate_queries": "plan",
                      **settings})
    app = create_app(repo, settings=cfg, pipeline=make_pipeline(repo), clock=clock,
                     announce=printed.append)
    return Api(TestClient(app, raise_server_exceptions=False), repo, app, clock, printed)


def free_port() -> int:
    """A loopback port nobody listens on right now (asked of the kernel with port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
