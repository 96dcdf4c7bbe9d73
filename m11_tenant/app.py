"""The composition root: ``create_app()`` assembles the JSON API and the HTML console over
the web kernel (:mod:`m11_tenant.web`: context, keys, limits, metrics, the error table).

Only this module (and :mod:`m11_tenant.region_app`, which builds on it) sees both
:mod:`m11_tenant.api` and :mod:`m11_tenant.console`; neither of those imports the other.
Run it with ``python -m m11_tenant serve`` (or ``uvicorn m11_tenant.app:create_app
--factory``); ``/docs`` lists every endpoint with its body, responses and examples.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from m11_tenant.api import routes_admin, routes_config, routes_query
from m11_tenant.api.fastpath import ConfigFastPath
from m11_tenant.api.models import REQUEST_MODELS
from m11_tenant.console import install_console
from m11_tenant.factory import open_repository
from m11_tenant.rag.ledger import WriteBehindLedger
from m11_tenant.rag.pipeline import RagPipeline
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.settings import Settings, load_settings, parse_rate
from m11_tenant.web.auth import Authenticator, Principal, check_admin_key, new_admin_key
from m11_tenant.web.context import ApiContext
from m11_tenant.web.errors import install_error_handlers
from m11_tenant.web.metrics import ApiMetrics
from m11_tenant.web.ratelimit import AuthThrottle, Counters, RateLimiter
from m11_tenant.web.security import SecurityHeaders, install_log_redaction

__all__ = ["Principal", "create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Per-tenant RAG configuration: validated, stored, cached, versioned and audited.

**Keys.** Send `Authorization: Bearer <key>` on everything except `/health` and the docs.
The platform admin key (`M11_ADMIN_KEY`) can do everything; a tenant key (created by the
admin with `POST /tenants/{tenant_id}/keys`) reads and changes only its own tenant — any
other attempt is a 403, counted (one row per key, target and action per hour) as `denied`
in the audit log of the key's own tenant. The `plan` is the platform's:
a tenant key that tries to change it gets 403 `platform_owned_field`. Keys are listed
(`GET /tenants/{tenant_id}/keys`), revoked (`DELETE …/keys/{key_id}`) and rotated
(`POST …/keys/{key_id}/rotate`); a revoked key is refused by every server within a second.
Too many failed keys from one address: 429 with `Retry-After`.

**Concurrency.** `GET /config/{tenant_id}` returns the version as `ETag`; send it back as
`If-Match` on a write and a stale write fails with 412 instead of silently winning.

**Locks.** A tenant can lock its config (`PUT /config/{tenant_id}/lock`) against platform
bulk changes: `POST /tenants/bulk` skips it and says so. Targeted changes still work.

**Limits.** Per tenant key: config writes 10/hour, previews 20/hour; queries follow the
plan's daily quota (all configurable). Past a limit: 429 with `Retry-After`.

**Errors** all look like `{"error": {"code", "message", "fields": [{field, message, type}]}}`.
"""


def create_app(repo: TenantConfigRepository | None = None, *,
               settings: Settings | None = None, pipeline: Any = None,
               clock: Callable[[], float] | None = None, rate_client: Any = None,
               announce: Callable[[str], None] | None = None, console: bool = True) -> FastAPI:
    """Build the management API and its console.

    Args:
        repo: the repository to serve; default :func:`m11_tenant.open_repository` on the
            settings' database and Redis (closed when the app shuts down).
        settings: :class:`~m11_tenant.settings.Settings`; default from the environment and
            ``.env``.
        pipeline: a ``RagPipeline`` for ``/query`` and previews; default one built on first
            use over ``repo`` with the store as its usage ledger, live for the providers the
            settings configure (offline without any).
        clock: seconds since the epoch, for rate-limit windows (tests).
        rate_client: the Redis client rate limits and failed sign-ins count in; default the
            repository's cache client (this process's memory when the cache is disabled,
            and whenever Redis does not answer).
        announce: where a generated admin key is printed (default stderr).
        console: also serve the tenant console at ``/console`` (default); ``False`` gives
            the JSON API alone.

    Raises:
        WeakAdminKeyError: the settings' admin key is too short or too common.
    """
    cfg = settings if settings is not None else load_settings()
    owns_repo = repo is None
    if repo is None:
        repo = open_repository(settings=cfg)
    admin_key = cfg.m11_admin_key
    if admin_key:
        check_admin_key(admin_key)
    else:
        admin_key = new_admin_key()
        (announce or _stderr)(f"M11_ADMIN_KEY is not set; this server's admin key is: "
                              f"{admin_key}")
    counters = Counters(rate_client or repo.cache.client, prefix=repo.cache.prefix)
    throttle = AuthThrottle(counters, parse_rate(cfg.m11_auth_failures))
    # Settlements are group-committed; the quota gate is not (see rag.ledger).
    ledger = None if pipeline is not None else WriteBehindLedger(repo.ledger)
    ctx = ApiContext(repo=repo, settings=cfg,
                     auth=Authenticator(repo.keys, admin_key, throttle=throttle),
                     limiter=RateLimiter(counters, **({"clock": clock} if clock else {})),
                     metrics=ApiMetrics(repo),
                     pipeline_factory=lambda: pipeline or _default_pipeline(repo, cfg, ledger))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_warm_up, ctx)
        yield
        await ctx.close_pipeline()
        if ledger is not None:
            ledger.close()  # write the last settlements before the store closes
        if owns_repo:
            repo.close()

    # Swagger UI and ReDoc from the package's own files: /docs works on an offline laptop.
    # No trailing-slash redirects: Starlette builds their Location from the Host header.
    app = FastAPIOffline(title="m11_tenant management API", version="1.0.0",
                         description=DESCRIPTION, lifespan=lifespan, redirect_slashes=False)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ConfigFastPath, ctx=ctx)  # outermost: before the headers and routing
    install_log_redaction()
    app.state.ctx = ctx
    app.state.metrics = ctx.metrics
    install_error_handlers(app)
    # Routing tries routes in order: the busiest first.
    app.include_router(routes_query.router)
    app.include_router(routes_config.router)
    app.include_router(routes_admin.router)
    if console:
        install_console(app, repo.keys, ctx.auth.admin_fingerprint)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _warm_up(ctx: ApiContext) -> None:
    """Load the pipeline before the first request: a burst of first queries would
    otherwise wait seconds for the model and tokenizers (or build them once per thread)."""
    try:
        ctx.pipeline.warm_up()
    except Exception as exc:  # the first /query reports it to its caller, with advice
        log.warning("the RAG pipeline could not be loaded at start: %s", exc)


def _default_pipeline(repo: TenantConfigRepository, settings: Settings,
                      ledger: WriteBehindLedger | None) -> RagPipeline:
    return RagPipeline(repo, ledger, settings=settings)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies the routes parse themselves."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in doc.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components.setdefault(model.__name__, doc)
    app.openapi_schema = schema
    return schema


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
