"""The management API (FastAPI): ``create_app()`` builds it; ``python -m m11_tenant serve``
runs it under uvicorn."""

from m11_tenant.api.app import create_app
from m11_tenant.api.auth import Principal

__all__ = ["Principal", "create_app"]
