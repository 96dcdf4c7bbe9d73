"""``POST /query``: a question answered with the tenant's config (the RAG pipeline).

Its own router, included first by :func:`m11_tenant.app.create_app`: routing tries the
routes in order, and the busiest route should not wait behind two dozen others.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool

from m11_tenant.api.models import QueryRequest, body_doc, error_docs
from m11_tenant.errors import TenantConfigError
from m11_tenant.rag.pipeline import QueryResult
from m11_tenant.web.auth import authorize_tenant
from m11_tenant.web.body import read_json
from m11_tenant.web.change_safety import log_query_after
from m11_tenant.web.context import Caller, Ctx, body_tenant
from m11_tenant.web.errors import to_http

router = APIRouter()


@router.post("/query", response_model=QueryResult, tags=["query"],
             openapi_extra=body_doc(QueryRequest),
             responses=error_docs(400, 403, 413, 415, 422, 429, 503),
             summary="Answer a question with the tenant's config (RAG pipeline)")
async def query(request: Request, ctx: Ctx, caller: Caller,
                background: BackgroundTasks) -> QueryResult:
    body = QueryRequest.parse(await read_json(request, ctx.settings.m11_max_body_bytes))
    tid = body_tenant(body.tenant_id)
    authorize_tenant(ctx.repo, caller, tid, "query")

    try:
        if ctx.query_rate is not None:  # Redis or the in-process fallback: off the event loop
            await run_in_threadpool(ctx.limit, "query", tid, ctx.query_rate)
        # Awaited on the event loop: a slow model holds no worker thread while it answers.
        result = await ctx.pipeline.aquery(tid, body.query)
    except TenantConfigError as exc:
        ctx.metrics.queries.labels(tid, to_http(exc).code).inc()
        raise
    ctx.metrics.query_done(tid, result.usage.prompt_tokens, result.usage.completion_tokens,
                           result.cost_usd)
    await log_query_after(ctx, tid, result, background)
    return result
