"""Per-tenant routes: config read/write/delete, history, rollback, preview (and replay),
explain, query log, lock. (``POST /query`` is in :mod:`.routes_query`.)"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from m11_tenant.api.models import (
    TENANT_ID_DOC,
    ConfigResponse,
    ConfigUpdateRequest,
    DeleteResponse,
    ExplainResponse,
    HistoryItem,
    HistoryResponse,
    LockRequest,
    LockResponse,
    PreviewRequest,
    PreviewResponse,
    QueryLogDeleted,
    QueryLogResponse,
    Reason,
    body_doc,
    error_docs,
)
from m11_tenant.repository import ResolvedConfig
from m11_tenant.schema import MAX_QUERY_LOG_SIZE, config_diff
from m11_tenant.store import Change
from m11_tenant.web.body import read_json
from m11_tenant.web.change_safety import (
    DEFAULT_PREVIEW_QUESTION,
    explain_tenant,
    read_query_log,
    run_replay,
)
from m11_tenant.web.context import (
    ApiContext,
    Caller,
    Ctx,
    client_address,
    parse_if_match,
)

router = APIRouter()

TenantId = Annotated[str, Path(
    description="3-64 characters: a-z, 0-9, '_' or '-', starting with a letter or digit",
    examples=["startup-co"], json_schema_extra=TENANT_ID_DOC)]
IfMatch = Annotated[str | None, Header(
    description='the ETag from GET /config/{tenant_id} (e.g. "3"); a stale one fails with 412')]
ReasonQuery = Annotated[Reason | None, Query()]

# The security requirement the ``Caller`` dependency would document, for routes without it.
BEARER_DOC = {"security": [{"HTTPBearer": []}]}


def versioned(resolved: ResolvedConfig, response: Response) -> ConfigResponse:
    """A config as the body, its version as the ``ETag`` (what ``If-Match`` sends back)."""
    response.headers["ETag"] = f'"{resolved.version}"'
    return ConfigResponse.of(resolved)


@router.get("/config/{tenant_id}", response_model=ConfigResponse, tags=["config"],
            responses=error_docs(400, 401, 403), openapi_extra=BEARER_DOC,
            summary="Effective config (the defaults if none is stored), ETag = version")
async def get_config(tenant_id: TenantId, request: Request,
                     response: Response) -> ConfigResponse:
    # A known caller's near-cache hit never gets here: ConfigFastPath (api.fastpath)
    # answers it before routing. What is left (a key to look up, a refusal to audit,
    # Redis or the database to ask) runs in the thread pool, with no dependency to resolve.
    ctx: ApiContext = request.app.state.ctx
    authorization = request.headers.get("authorization")
    client = client_address(request)

    def full() -> ConfigResponse:
        caller = ctx.auth.authenticate(authorization, client)
        request.state.caller = caller  # error responses say less to a caller without it
        tid = ctx.tenant(caller, tenant_id, "read the config")
        started = time.perf_counter()
        resolved = ctx.repo.get_record(tid)
        ctx.metrics.config_load.labels(resolved.source).observe(time.perf_counter() - started)
        return versioned(resolved, response)

    return await run_in_threadpool(full)


@router.post("/config/{tenant_id}", response_model=ConfigResponse, tags=["config"],
             openapi_extra=body_doc(ConfigUpdateRequest),
             responses=error_docs(400, 403, 412, 413, 415, 422, 429, 503),
             summary="Change the config: merge=true changes only the given fields")
async def update_config(tenant_id: TenantId, request: Request, response: Response, ctx: Ctx,
                        caller: Caller, if_match: IfMatch = None) -> ConfigResponse:
    tid = ctx.tenant(caller, tenant_id, "change the config")
    expected = parse_if_match(if_match)
    if not caller.is_admin:
        ctx.limit("config_write", tid, ctx.write_rate)
    body = ConfigUpdateRequest.parse(
        await read_json(request, ctx.settings.m11_max_body_bytes))
    resolved = await run_in_threadpool(
        lambda: ctx.repo.update_config(tid, body.config, body.merge, expected_version=expected,
                                       actor=caller.actor, role=caller.role,
                                       reason=body.reason))
    ctx.metrics.config_changed(tid, "update" if body.merge else "replace")
    return versioned(resolved, response)


@router.delete("/config/{tenant_id}", response_model=DeleteResponse, tags=["config"],
               responses=error_docs(400, 403, 404, 412, 422, 429, 503),
               summary="Drop the stored config: the tenant runs on the defaults again")
def delete_config(tenant_id: TenantId, response: Response, ctx: Ctx, caller: Caller,
                  if_match: IfMatch = None, reason: ReasonQuery = None) -> DeleteResponse:
    tid = ctx.tenant(caller, tenant_id, "delete the config")
    expected = parse_if_match(if_match)
    if not caller.is_admin:
        ctx.limit("config_write", tid, ctx.write_rate)
    ctx.repo.delete_config(tid, expected_version=expected, actor=caller.actor, role=caller.role,
                           reason=reason)
    ctx.metrics.config_changed(tid, "delete")
    response.headers["ETag"] = '"0"'
    return DeleteResponse(tenant_id=tid)


@router.get("/config/{tenant_id}/history", response_model=HistoryResponse, tags=["history"],
            responses=error_docs(400, 403), summary="Kept versions, newest first")
def get_history(tenant_id: TenantId, ctx: Ctx, caller: Caller) -> HistoryResponse:
    tid = ctx.tenant(caller, tenant_id, "read the history")
    return HistoryResponse(tenant_id=tid, versions=[
        HistoryItem(version=h.version, config=h.config, created_at=h.created_at,
                    created_by=h.created_by, action=h.action)
        for h in ctx.repo.get_history(tid)])


@router.post("/config/{tenant_id}/rollback", response_model=ConfigResponse, tags=["history"],
             responses=error_docs(400, 403, 404, 412, 422, 429, 503),
             summary="Restore kept version N as a new version")
def rollback(tenant_id: TenantId, response: Response, ctx: Ctx, caller: Caller,
             version: Annotated[int, Query(ge=1, le=10**12,
                                           description="a version from /history")],
             if_match: IfMatch = None, reason: ReasonQuery = None) -> ConfigResponse:
    tid = ctx.tenant(caller, tenant_id, "roll back the config")
    expected = parse_if_match(if_match)
    if not caller.is_admin:
        ctx.limit("config_write", tid, ctx.write_rate)
    resolved = ctx.repo.rollback(tid, version, expected_version=expected, actor=caller.actor,
                                 role=caller.role, reason=reason)
    ctx.metrics.config_changed(tid, "rollback")
    return versioned(resolved, response)


@router.post("/config/{tenant_id}/preview", response_model=PreviewResponse, tags=["config"],
             openapi_extra=body_doc(PreviewRequest),
             responses=error_docs(400, 403, 413, 415, 422, 429, 503),
             summary="Validate a proposed change and run a sample query with it; with "
                     "replay=N also re-run the N newest logged questions; writes nothing "
                     "but the replay's audit line")
async def preview(tenant_id: TenantId, request: Request, ctx: Ctx,
                  caller: Caller) -> PreviewResponse:
    tid = ctx.tenant(caller, tenant_id, "preview a config")
    if not caller.is_admin:
        ctx.limit("preview", tid, ctx.preview_rate)
    body = PreviewRequest.parse(await read_json(request, ctx.settings.m11_max_body_bytes))

    def propose() -> tuple[Any, Any]:
        return ctx.repo.propose(tid, body.config, body.merge, role=caller.role)

    current, proposed = await run_in_threadpool(propose)
    result = await ctx.pipeline.arun(proposed, body.query or DEFAULT_PREVIEW_QUESTION,
                                     tenant_id=tid)
    replay = None if body.replay is None else await run_in_threadpool(
        run_replay, ctx, caller, tid, current, proposed, body.replay, live=body.live,
        reason=body.reason)
    return PreviewResponse(
        tenant_id=tid, config=proposed,
        diff=config_diff(current.config.model_dump(), proposed.model_dump()),
        current_version=current.version, result=result, replay=replay)


@router.get("/config/{tenant_id}/explain", response_model=ExplainResponse, tags=["config"],
            responses=error_docs(400, 403),
            summary="Per field: effective value, where it comes from, who may change it")
def get_explain(tenant_id: TenantId, ctx: Ctx, caller: Caller) -> ExplainResponse:
    tid = ctx.tenant(caller, tenant_id, "explain the config")
    return ExplainResponse.model_validate(explain_tenant(ctx, tid))


@router.get("/config/{tenant_id}/query-log", response_model=QueryLogResponse,
            tags=["query log"], responses=error_docs(400, 403),
            summary="The tenant's logged questions (redacted), newest first")
def get_query_log(tenant_id: TenantId, ctx: Ctx, caller: Caller,
                  limit: Annotated[int, Query(ge=1, le=MAX_QUERY_LOG_SIZE)] = 100
                  ) -> QueryLogResponse:
    tid = ctx.tenant(caller, tenant_id, "read the query log")
    entries = read_query_log(ctx, tid, limit)
    return QueryLogResponse(tenant_id=tid, entries=entries,
                            query_log_size=ctx.repo.get_config(tid).query_log_size)


@router.delete("/config/{tenant_id}/query-log", response_model=QueryLogDeleted,
               tags=["query log"], responses=error_docs(400, 403, 503),
               summary="Delete every logged question of the tenant (audited)")
def delete_query_log(tenant_id: TenantId, ctx: Ctx, caller: Caller,
                     reason: ReasonQuery = None) -> QueryLogDeleted:
    tid = ctx.tenant(caller, tenant_id, "delete the query log")
    deleted = ctx.repo.clear_query_log(
        tid, Change(caller.actor, caller.role, "query_log_deleted", reason))
    return QueryLogDeleted(tenant_id=tid, deleted=deleted)


@router.get("/config/{tenant_id}/lock", response_model=LockResponse, tags=["lock"],
            responses=error_docs(400, 403),
            summary="Whether the tenant is locked against platform bulk changes")
def get_lock(tenant_id: TenantId, ctx: Ctx, caller: Caller) -> LockResponse:
    tid = ctx.tenant(caller, tenant_id, "read the lock")
    return LockResponse(tenant_id=tid, locked=ctx.repo.is_locked(tid))


@router.put("/config/{tenant_id}/lock", response_model=LockResponse, tags=["lock"],
            openapi_extra=body_doc(LockRequest),
            responses=error_docs(400, 403, 413, 415, 422, 503),
            summary="Lock (or unlock) the config against platform bulk changes")
async def set_lock(tenant_id: TenantId, request: Request, ctx: Ctx,
                   caller: Caller) -> LockResponse:
    tid = ctx.tenant(caller, tenant_id, "lock the config")
    body = LockRequest.parse(await read_json(request, ctx.settings.m11_max_body_bytes))
    change = Change(caller.actor, caller.role, "lock" if body.locked else "unlock",
                    body.reason)
    changed = await run_in_threadpool(ctx.repo.set_locked, tid, body.locked, change)
    return LockResponse(tenant_id=tid, locked=body.locked, changed=changed)
