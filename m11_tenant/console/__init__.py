"""The tenant console: server-rendered pages to browse, edit, preview and roll back configs.

Mounted at ``/console`` by :func:`m11_tenant.api.create_app` through :func:`install_console`;
it uses the app's repository, key checks, rate limits and RAG pipeline, so a change made
here is validated, versioned and audited exactly like one made through the JSON API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def install_console(app: FastAPI, secret: str) -> None:
    """Serve the console from ``app``; session cookies are signed with a key derived from
    ``secret`` (the admin key, which every worker of one server shares)."""
    # Imported here: the routes use m11_tenant.api, whose app factory calls this function.
    from m11_tenant.console.routes import ConsoleState, router
    from m11_tenant.console.session import SessionSigner

    app.state.console = ConsoleState(SessionSigner(secret))
    app.include_router(router)


__all__ = ["install_console"]
