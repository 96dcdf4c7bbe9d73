"""One JSON error shape for every failure, built from the package's exceptions.

    {"error": {"code": "validation_error", "message": "...",
               "fields": [{"field": "temperature", "message": "...", "type": "..."}]}}

``code`` is a stable machine-readable string (the table below), ``message`` says what to
do next, ``fields`` lists field-level problems (empty when there are none).

=====  ============================================================================
400    invalid_json, invalid_tenant_id, invalid_header
401    unauthorized            403  forbidden             404  not_found
403    platform_owned_field (a tenant changing ``plan``; ``fields`` names it)
405    method_not_allowed      408  request_timeout (body slower than M11_BODY_TIMEOUT)
409    tenant_locked           412  version_conflict
413    payload_too_large       415  unsupported_media_type
422    validation_error (field type ``text_policy``: a control character, lone surrogate
       or bidi override in free text), query_refused
429    rate_limited, quota_exceeded, budget_exceeded (all with Retry-After)
503    store_unavailable, service_unavailable (the only one a caller without a valid key
       sees), model_unavailable. No 503 names a host, port or driver.
=====  ============================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from m11_tenant.errors import (
    BudgetExceededError,
    ConfigNotFoundError,
    ConfigValidationError,
    FieldError,
    InvalidTenantIdError,
    ModelUnavailableError,
    PlatformOwnedFieldError,
    QueryRefusedError,
    QuotaExceededError,
    ServiceUnavailableError,
    StoreUnavailableError,
    TenantConfigError,
    TenantLockedError,
    VersionConflictError,
)

log = logging.getLogger("m11_tenant.api")

STORE_RETRY_AFTER = 5  # seconds: a hint, the database's recovery time is unknown
STORE_UNAVAILABLE = (f"the database is unavailable right now, so nothing was saved or "
                     f"changed (NOT saved); retry in {STORE_RETRY_AFTER} seconds")
SERVICE_UNAVAILABLE = "the service is unavailable right now; retry in a few seconds"


class HttpError(TenantConfigError):
    """An HTTP-level refusal (auth, content type, rate limit) with its status and code.

    Raised only by the web kernel and the routes over it; a ``TenantConfigError`` (drawn in
    :mod:`m11_tenant.errors`) so that one handler answers it and the package's own errors."""

    def __init__(self, status: int, code: str, message: str, *,
                 fields: Iterable[FieldError] = (), headers: Mapping[str, str] | None = None):
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = list(fields), dict(headers or {})
        super().__init__(message)


def error_body(code: str, message: str, fields: Iterable[FieldError] = ()) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "fields": [f.as_dict() for f in fields]}}


def error_response(status: int, code: str, message: str, fields: Iterable[FieldError] = (),
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, fields), status_code=status,
                        headers=dict(headers or {}))


def _validation(exc: ConfigValidationError) -> HttpError:
    """A body the JSON parser refused is 400 (413 when too large); bad fields are 422."""
    kinds = {e.type for e in exc.errors if e.field == "body"}
    if "too_large" in kinds:
        return HttpError(413, "payload_too_large", exc.errors[0].message, fields=exc.errors)
    if kinds:
        return HttpError(400, "invalid_json", exc.errors[0].message, fields=exc.errors)
    head = str(exc).split("\n", 1)[0]
    return HttpError(422, "validation_error", head, fields=exc.errors)


def _refused(status: int, code: str) -> Callable[[QueryRefusedError], HttpError]:
    """A quota, budget or model refusal, with its ``Retry-After`` when it knows one."""
    def rule(exc: QueryRefusedError) -> HttpError:
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return HttpError(status, code, str(exc), headers=retry)
    return rule


def _query_refused(exc: QueryRefusedError) -> HttpError:
    detail = exc.detail if isinstance(exc.detail, Mapping) else {}
    fields = [FieldError(str(detail["field"]), str(exc), "plan")] if "field" in detail else []
    return HttpError(422, "query_refused", str(exc), fields=fields)


def _unavailable(status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None
                 ) -> Callable[[ServiceUnavailableError], HttpError]:
    """The driver's text names hosts, ports and databases: it goes to the log (and the
    admin's /health/detail), never into a response."""
    def rule(exc: ServiceUnavailableError) -> HttpError:
        log.warning("%s: %s", type(exc).__name__, exc)
        return HttpError(status, code, message, headers=headers)
    return rule


#: Exception class -> its HTTP answer. :func:`to_http` walks the exception's MRO and takes
#: the first class listed here, so a subclass is answered by its own rule when it has one
#: and by its nearest listed ancestor otherwise; the order of this table does not matter.
HTTP_ERRORS: dict[type[Exception], Callable[[Any], HttpError]] = {
    HttpError: lambda exc: exc,
    InvalidTenantIdError: lambda exc: HttpError(400, "invalid_tenant_id",
                                                exc.errors[0].message, fields=exc.errors),
    ConfigValidationError: _validation,
    ConfigNotFoundError: lambda exc: HttpError(404, "not_found", str(exc)),
    VersionConflictError: lambda exc: HttpError(412, "version_conflict", str(exc),
                                                headers={"ETag": f'"{exc.actual}"'}),
    TenantLockedError: lambda exc: HttpError(409, "tenant_locked", str(exc)),
    PlatformOwnedFieldError: lambda exc: HttpError(403, "platform_owned_field", str(exc),
                                                   fields=exc.errors),
    QueryRefusedError: _query_refused,
    QuotaExceededError: _refused(429, "quota_exceeded"),
    BudgetExceededError: _refused(429, "budget_exceeded"),
    ModelUnavailableError: _refused(503, "model_unavailable"),
    ServiceUnavailableError: _unavailable(503, "service_unavailable", SERVICE_UNAVAILABLE),
    StoreUnavailableError: _unavailable(503, "store_unavailable", STORE_UNAVAILABLE,
                                        {"Retry-After": str(STORE_RETRY_AFTER)}),
}


def to_http(exc: Exception) -> HttpError:
    """Map a package exception to its status, code and headers (:data:`HTTP_ERRORS`, the
    table above); the JSON API and the console both answer through it."""
    for cls in type(exc).__mro__:
        rule = HTTP_ERRORS.get(cls)
        if rule is not None:
            return rule(exc)
    log.error("no HTTP mapping for %s: %s", type(exc).__name__, exc)
    return HttpError(500, "internal_error", "the server failed unexpectedly; the error was logged")


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "validation_error"}


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the app in the one shape, including FastAPI's and Starlette's own."""

    @app.exception_handler(TenantConfigError)
    async def _package_error(request: Request, exc: TenantConfigError) -> JSONResponse:
        err = to_http(exc)
        if err.status == 503 and getattr(request.state, "caller", None) is None:
            # Not authenticated (e.g. the key lookup itself failed): not even which service.
            err = HttpError(503, "service_unavailable", SERVICE_UNAVAILABLE,
                            headers=err.headers)
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None and err.code == "validation_error":
            metrics.validation_error(request.path_params.get("tenant_id"))
        return error_response(err.status, err.code, err.message, err.fields, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [FieldError(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
                             e["msg"], e["type"]) for e in exc.errors()]
        where = ", ".join(sorted({f.field for f in fields}))
        return error_response(422, "validation_error", f"invalid request parameter(s): {where}",
                              fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs for the list"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error",
                              "the server failed unexpectedly; the error was logged")
