"""The management API served by one region process (``serve --region``).

The same app as :func:`~m11_tenant.app.create_app`, on the local region's repository:
reads are local, writes commit locally and replicate. Its ``/metrics`` adds the lag of the
pairs into this region and the apply loop's counters; the apply loop runs for as long as
the app does (started and stopped by its lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from m11_tenant.app import create_app
from m11_tenant.regions.metrics import RegionStateCollector, ReplicationCollector
from m11_tenant.regions.service import region_from_settings
from m11_tenant.settings import Settings, load_settings


def create_region_app(settings: Settings | None = None) -> FastAPI:
    """Build the API of the region named by ``M11_REGION`` (see ``.env.example``).

    Raises:
        ConfigValidationError: the region settings are incomplete (no ``REDIS_URL``, a
            region missing from ``M11_REGIONS``, …).
    """
    cfg = settings if settings is not None else load_settings()
    service = region_from_settings(cfg)
    app = create_app(service.repository, settings=cfg)
    registry = app.state.metrics.registry
    registry.register(ReplicationCollector(service.repository))
    registry.register(RegionStateCollector(service.repository))
    serve_app = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            async with serve_app(running):
                yield
        finally:
            service.close()

    app.router.lifespan_context = lifespan
    app.state.region = service
    return app
