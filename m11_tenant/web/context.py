"""What every route needs, built once per app: repository, auth, limits, metrics, pipeline."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from m11_tenant.errors import ConfigValidationError, FieldError, InvalidTenantIdError
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import validate_tenant_id
from m11_tenant.settings import Rate, Settings, parse_rate
from m11_tenant.web.auth import Authenticator, Principal, authorize_tenant
from m11_tenant.web.errors import HttpError
from m11_tenant.web.metrics import ApiMetrics
from m11_tenant.web.ratelimit import RateLimiter

_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,12})"?')


@dataclass
class ApiContext:
    """One app's collaborators; routes reach it through ``request.app.state.ctx``."""

    repo: TenantConfigRepository
    settings: Settings
    auth: Authenticator
    limiter: RateLimiter
    metrics: ApiMetrics
    pipeline_factory: Callable[[], Any]
    _pipeline: Any = None
    _pipeline_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def write_rate(self) -> Rate | None:
        return parse_rate(self.settings.m11_rate_config_writes)

    @property
    def preview_rate(self) -> Rate | None:
        return parse_rate(self.settings.m11_rate_previews)

    @property
    def query_rate(self) -> Rate | None:
        """An extra per-key rate for queries; ``plan`` (the default) adds none: the plan's
        daily quota is enforced exactly by the usage ledger's atomic gate, Redis or not."""
        text = self.settings.m11_rate_queries
        return None if text == "plan" else parse_rate(text)

    def limit(self, kind: str, tenant_id: str, rate: Rate | None) -> None:
        try:
            self.limiter.hit(kind, tenant_id, rate)
        except HttpError:
            self.metrics.rate_limited.labels(kind).inc()
            raise

    def tenant(self, caller: Principal, tenant_id: str, what: str) -> str:
        """The path's tenant id, checked (400) and allowed for the caller (403, audited)."""
        tid = path_tenant(tenant_id)
        authorize_tenant(self.repo, caller, tid, what)
        return tid

    @property
    def pipeline(self) -> Any:
        """The RAG pipeline, built on first use (its index loads once per process)."""
        with self._pipeline_lock:
            if self._pipeline is None:
                self._pipeline = self.pipeline_factory()
            return self._pipeline

    async def close_pipeline(self) -> None:
        """Close the pipeline's provider connections, if it was built and has any."""
        aclose = getattr(self._pipeline, "aclose", None)
        if aclose is not None:
            await aclose()


async def get_ctx(request: Request) -> ApiContext:
    """The app's context. ``async`` on purpose: FastAPI runs a plain ``def`` dependency in
    its thread pool, a thread hop per request for an attribute read."""
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]
_bearer = HTTPBearer(auto_error=False, description="the admin key or a tenant key")


async def get_caller(request: Request, _doc: Annotated[Any, Depends(_bearer)] = None
                     ) -> Principal:
    """The authenticated caller (401 otherwise). ``_bearer`` only adds /docs' Authorize.

    Kept on ``request.state.caller``: error responses say less to a caller without it.
    """
    caller = request.app.state.ctx.auth.authenticate(request.headers.get("authorization"),
                                                     client_address(request))
    request.state.caller = caller
    return caller


Caller = Annotated[Principal, Depends(get_caller)]


def client_address(request: Request) -> str:
    """Where the request came from, for the failed-authentication throttle (uvicorn puts
    a trusted proxy's ``X-Forwarded-For`` here; see ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


def path_tenant(tenant_id: str) -> str:
    """A tenant id from the URL, checked before it touches a key, a path or a query (400)."""
    return validate_tenant_id(tenant_id)


def body_tenant(tenant_id: str) -> str:
    """A tenant id from a body: a field of the body, so a wrong one is a 422."""
    try:
        return validate_tenant_id(tenant_id)
    except InvalidTenantIdError as exc:
        raise ConfigValidationError(exc.errors) from None


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: "3"`` -> 3 (the version to expect); absent or ``*`` -> no precondition."""
    if value is None or value.strip() == "*":
        return None
    match = _ETAG.fullmatch(value.strip())
    if not match:
        raise HttpError(400, "invalid_header",
                        'If-Match must be the ETag from GET /config/{tenant_id}, e.g. "3"',
                        fields=[FieldError("If-Match", "expected a quoted version number",
                                           "header")])
    return int(match[1])
