"""Platform routes: health, metrics, tenants, keys, bulk changes, the audit log."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from m11_tenant.api.models import (
    TENANT_ID_DOC,
    AuditResponse,
    BulkItem,
    BulkRequest,
    BulkResponse,
    HealthResponse,
    KeyInfo,
    KeyResponse,
    KeyRevokedResponse,
    KeyRotatedResponse,
    KeysResponse,
    TenantsResponse,
    body_doc,
    error_docs,
)
from m11_tenant.schema import PLATFORM_OWNED_FIELDS
from m11_tenant.store import BULK_ROLE, ApiKeyRecord, Change, locked_message
from m11_tenant.web.auth import authorize_tenant, hash_key, new_tenant_key, require_admin
from m11_tenant.web.body import read_json
from m11_tenant.web.context import Caller, Ctx, path_tenant
from m11_tenant.web.errors import HttpError

router = APIRouter()
log = logging.getLogger("m11_tenant.api")

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="entries to skip")]


@router.get("/health", response_model=HealthResponse, response_model_exclude_none=True,
            tags=["operations"], summary="ok or degraded, per service (no key needed)")
def health(ctx: Ctx) -> dict:
    """Only ``ok``/``degraded`` per service: what is wrong (hosts, drivers) is logged and
    shown to the admin by ``/health/detail``, never to a caller without a key."""
    detail = ctx.repo.health()
    if detail["status"] != "ok":
        log.warning("health degraded: %s", detail["services"])
    return public_health(detail)


@router.get("/health/detail", response_model=HealthResponse, response_model_exclude_none=True,
            tags=["operations"], responses=error_docs(403),
            summary="Each service's state with its error text (admin key)")
def health_detail(ctx: Ctx, caller: Caller) -> dict:
    require_admin(ctx.repo, caller, "read the health details")
    return ctx.repo.health()


def public_health(detail: dict) -> dict:
    """The repository's health with every service reduced to ``ok`` or ``degraded``.

    A cache or subscription that is switched off on purpose is ``ok``: nothing is broken.
    """
    return {"status": detail["status"],
            "services": {name: "ok" if state in ("ok", "disabled") else "degraded"
                         for name, state in detail["services"].items()}}


@router.get("/metrics", tags=["operations"], responses={
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
    **error_docs(403)}, summary="Prometheus metrics (admin key)")
def metrics(ctx: Ctx, caller: Caller) -> Response:
    require_admin(ctx.repo, caller, "read the metrics")
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/tenants", response_model=TenantsResponse, tags=["tenants"],
            responses=error_docs(403, 422), summary="Tenants with a stored config (admin key)")
def list_tenants(ctx: Ctx, caller: Caller, limit: Limit = 100, offset: Offset = 0
                 ) -> TenantsResponse:
    require_admin(ctx.repo, caller, "list tenants")
    return TenantsResponse(tenants=ctx.repo.list_tenants(limit=limit, offset=offset),
                           count=ctx.repo.count_tenants(), limit=limit, offset=offset)


TenantPath = Annotated[str, Path(examples=["startup-co"], json_schema_extra=TENANT_ID_DOC)]
KeyIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["3f2a9c1b7e4d"],
                                description="the key's public id, from GET .../keys")]
MAX_GRACE_SECONDS = 7 * 86_400


@router.post("/tenants/{tenant_id}/keys", response_model=KeyResponse, status_code=201,
             tags=["keys"], responses=error_docs(400, 403, 503),
             summary="Create a tenant key (admin key); the key is returned once")
def create_key(tenant_id: TenantPath, ctx: Ctx, caller: Caller) -> KeyResponse:
    tid = path_tenant(tenant_id)
    require_admin(ctx.repo, caller, f"create keys for tenant {tid!r}")
    key_id, key = new_tenant_key()
    ctx.repo.keys.add_api_key(tid, key_id, hash_key(key),
                              Change(caller.actor, caller.role, "key_created"))
    return KeyResponse(tenant_id=tid, key_id=key_id, key=key)


@router.get("/tenants/{tenant_id}/keys", response_model=KeysResponse, tags=["keys"],
            responses=error_docs(400, 403, 503),
            summary="A tenant's keys: ids, created, last used, revoked (never the secret)")
def list_keys(tenant_id: TenantPath, ctx: Ctx, caller: Caller) -> KeysResponse:
    tid = ctx.tenant(caller, tenant_id, "list the keys")
    now = ctx.repo.now()
    return KeysResponse(tenant_id=tid, keys=[
        key_info(record, now) for record in ctx.repo.keys.list_api_keys(tid)])


@router.delete("/tenants/{tenant_id}/keys/{key_id}", response_model=KeyRevokedResponse,
               tags=["keys"], responses=error_docs(400, 403, 404, 422, 503),
               summary="Revoke a key now (admin, or the tenant for its own keys)")
def revoke_key(tenant_id: TenantPath, key_id: KeyIdPath, ctx: Ctx,
               caller: Caller) -> KeyRevokedResponse:
    tid = ctx.tenant(caller, tenant_id, "revoke keys")
    result = ctx.repo.keys.revoke_api_key(tid, key_id,
                                          Change(caller.actor, caller.role, "key_revoked"))
    if result is None:
        raise _no_key(tid, key_id)
    ctx.auth.forget(key_id)
    record, changed = result
    return KeyRevokedResponse(tenant_id=tid, key=key_info(record, ctx.repo.now()),
                              changed=changed)


@router.post("/tenants/{tenant_id}/keys/{key_id}/rotate", response_model=KeyRotatedResponse,
             status_code=201, tags=["keys"], responses=error_docs(400, 403, 404, 422, 503),
             summary="Issue a new key and revoke this one, now or after a grace period")
def rotate_key(tenant_id: TenantPath, key_id: KeyIdPath, ctx: Ctx, caller: Caller,
               grace_seconds: Annotated[int, Query(
                   ge=0, le=MAX_GRACE_SECONDS,
                   description="seconds the old key keeps working (0: revoked now)")] = 0
               ) -> KeyRotatedResponse:
    tid = ctx.tenant(caller, tenant_id, "rotate keys")
    new_id, key = new_tenant_key()
    store = ctx.repo.keys
    reason = f"rotation: key {key_id} ends " + (f"in {grace_seconds} s" if grace_seconds
                                                 else "now")
    record = store.rotate_api_key(tid, key_id, new_id, hash_key(key),
                                  Change(caller.actor, caller.role, "key_rotated", reason),
                                  grace_seconds)
    if record is None:
        raise _no_key(tid, key_id)
    ctx.auth.forget(key_id)
    old = next(k for k in store.list_api_keys(tid) if k.key_id == key_id)
    return KeyRotatedResponse(tenant_id=tid, key_id=new_id, key=key,
                              replaces=key_info(old, store.now()))


def key_info(record: ApiKeyRecord, now: str) -> KeyInfo:
    """What a listing shows of a key: everything but the secret (never stored anyway)."""
    status = "active" if record.revoked_at is None else (
        "ending" if record.active(now) else "revoked")
    return KeyInfo(key_id=record.key_id, status=status, created_at=record.created_at,
                   created_by=record.created_by, last_used_at=record.last_used_at,
                   revoked_at=record.revoked_at, revoked_by=record.revoked_by)


def _no_key(tenant_id: str, key_id: str) -> HttpError:
    return HttpError(404, "not_found", f"tenant {tenant_id!r} has no active key {key_id!r}; "
                     f"GET /tenants/{tenant_id}/keys lists its keys")


@router.post("/tenants/bulk", response_model=BulkResponse, response_model_exclude_none=True,
             tags=["tenants"],
             openapi_extra=body_doc(BulkRequest),
             responses=error_docs(400, 403, 413, 415, 422),
             summary="Apply one change to many tenants (admin key), all or nothing; locked "
             "tenants are skipped")
async def bulk_change(request: Request, ctx: Ctx, caller: Caller) -> BulkResponse:
    require_admin(ctx.repo, caller, "make bulk changes")
    body = BulkRequest.parse(await read_json(request, ctx.settings.m11_max_body_bytes))

    def run() -> BulkResponse:
        targets = body.tenants if body.tenants is not None else list(ctx.repo.iter_tenants())
        written, skipped, owned_only = ctx.repo.update_many(
            targets, body.config, body.merge, actor=caller.actor, role=BULK_ROLE,
            reason=body.reason)
        for resolved in written:
            ctx.metrics.config_changed(resolved.tenant_id, "bulk")
        owned = [k for k in body.config if k in PLATFORM_OWNED_FIELDS]
        return BulkResponse(
            updated=[BulkItem(tenant_id=r.tenant_id, version=r.version,
                              only=owned if r.tenant_id in owned_only else None)
                     for r in written],
            skipped=[BulkItem(tenant_id=tid, reason=locked_message(tid)) for tid in skipped])

    return await run_in_threadpool(run)


@router.get("/audit", response_model=AuditResponse, tags=["history"],
            responses=error_docs(400, 403, 422),
            summary="Audit entries, newest first (a tenant key sees its own tenant)")
def audit(ctx: Ctx, caller: Caller, tenant_id: Annotated[str | None, Query(
        description="only this tenant's entries")] = None, limit: Limit = 100,
        offset: Offset = 0) -> AuditResponse:
    if tenant_id is None and not caller.is_admin:
        tenant_id = caller.tenant_id
    if tenant_id is not None:
        tenant_id = path_tenant(tenant_id)
        authorize_tenant(ctx.repo, caller, tenant_id, "read the audit log")
    entries = ctx.repo.get_audit_log(tenant_id, limit=limit, offset=offset)
    return AuditResponse(entries=entries, limit=limit, offset=offset)
