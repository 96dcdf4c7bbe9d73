"""The tenant console: server-rendered pages to browse, edit, preview and roll back configs.

Mounted at ``/console`` by :func:`m11_tenant.app.create_app` through :func:`install_console`;
it uses the web kernel's context (the app's repository, key checks, rate limits and RAG
pipeline), so a change made here is validated, versioned and audited exactly like one made
through the JSON API, without importing :mod:`m11_tenant.api`.
"""

from __future__ import annotations

from fastapi import FastAPI

from m11_tenant.console.routes import ConsoleState, router
from m11_tenant.console.session import Sessions
from m11_tenant.store import KeyStore


def install_console(app: FastAPI, store: KeyStore, admin_fingerprint: str) -> None:
    """Serve the console from ``app``; sessions live in ``store`` (shared by every worker
    and server on that database); admin sessions last while the admin key's
    ``admin_fingerprint`` stays the same."""
    app.state.console = ConsoleState(Sessions(store, admin_fingerprint))
    app.include_router(router)


__all__ = ["install_console"]
