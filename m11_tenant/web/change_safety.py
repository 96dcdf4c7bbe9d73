"""Change safety for the API and the console: the query-log hook, replay, explain.

Shared by ``routes_config`` (JSON) and the console (HTML), so both bound a replay the
same way, audit it the same way, and explain a config the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import BackgroundTasks
from starlette.concurrency import run_in_threadpool

from m11_tenant.errors import ConfigValidationError, FieldError, StoreUnavailableError
from m11_tenant.explain import explain
from m11_tenant.rag.pipeline import QueryResult, RagPipeline
from m11_tenant.rag.querylog import record_query
from m11_tenant.rag.replay import MAX_REPLAY, replay, summarize, traffic_per_day
from m11_tenant.repository import ResolvedConfig
from m11_tenant.schema import MAX_QUERY_LOG_SIZE, TenantConfig, load_catalog
from m11_tenant.store import Change
from m11_tenant.web.auth import Principal
from m11_tenant.web.context import ApiContext

log = logging.getLogger(__name__)
DEFAULT_PREVIEW_QUESTION = "How does hybrid search combine keyword and semantic retrieval?"
AUDIT_SCAN = 1000  # audit lines explain reads; older origins come from the kept history


# ---- the query log ------------------------------------------------------------------------
async def log_query_after(ctx: ApiContext, tenant_id: str, result: QueryResult,
                          tasks: BackgroundTasks) -> None:
    """Add the log write for an answered question to ``tasks``, run after the response is
    sent; nothing when the tenant keeps no log (``query_log_size`` 0: no work at all).

    The setting is read from the near cache on the event loop (the query just loaded it);
    only when it is not there does the read go to a worker thread (Redis or the database)."""
    resolved = ctx.repo.get_near(tenant_id)
    config = (resolved.config if resolved is not None
              else await run_in_threadpool(ctx.repo.get_config, tenant_id))
    if config.query_log_size:
        tasks.add_task(_log_query, ctx, tenant_id, result, config.query_log_size)


def _log_query(ctx: ApiContext, tenant_id: str, result: QueryResult, keep: int) -> None:
    # The answer was already sent and its usage recorded: a lost log line is not worth an
    # error, only a warning (the log is a convenience, never a record anyone relies on).
    try:
        record_query(ctx.repo, tenant_id, result, keep=keep,
                     max_age_days=ctx.settings.query_log_max_age_days)
    except StoreUnavailableError as exc:
        log.warning("query log of %s not written: %s", tenant_id, exc)


def read_query_log(ctx: ApiContext, tenant_id: str, limit: int) -> list[dict[str, Any]]:
    return [{"at": e.at, "question": e.question, "source_ids": list(e.source_ids),
             "model": e.model, "prompt_tokens": e.prompt_tokens,
             "completion_tokens": e.completion_tokens, "cost_usd": e.cost_usd}
            for e in ctx.repo.query_log(
                tenant_id, limit=limit, max_age_days=ctx.settings.query_log_max_age_days)]


# ---- replay -------------------------------------------------------------------------------
def check_replay(value: object) -> int:
    """The ``replay`` count of a preview body: an integer 1..MAX_REPLAY (422 otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPLAY:
        raise ConfigValidationError(FieldError(
            "replay", f"replay must be an integer from 1 to {MAX_REPLAY} (how many of the "
            f"newest logged questions to re-run), got {value!r}", "replay_range"))
    return value


def _offline(pipeline: RagPipeline) -> RagPipeline:
    """The same index, catalog and reranker, always answered by the offline generator."""
    return RagPipeline(index=pipeline.index, catalog=pipeline.catalog, generation="offline",
                       reranker=pipeline.reranker)


def run_replay(ctx: ApiContext, caller: Principal, tenant_id: str, current: ResolvedConfig,
               proposed: TenantConfig, count: int, *, live: bool = False,
               reason: str | None = None) -> dict[str, Any]:
    """Replay the tenant's ``count`` newest logged questions under both configs.

    Writes one audit line (action ``replay``) and nothing else.

    Raises:
        ConfigValidationError: on the field ``replay`` when nothing is logged.
    """
    logged = ctx.repo.query_log(tenant_id, limit=MAX_QUERY_LOG_SIZE,
                                max_age_days=ctx.settings.query_log_max_age_days)
    if not logged:
        raise ConfigValidationError(FieldError(
            "replay", f"tenant {tenant_id!r} has no logged questions to replay: set "
            "query_log_size above 0, let some queries arrive, then replay", "replay_empty"),
            "nothing to replay")
    pipeline = ctx.pipeline if live else _offline(ctx.pipeline)
    rows, stopped = replay(pipeline, current.config, proposed, logged[:count],
                           tenant_id=tenant_id, time_budget_s=ctx.settings.m11_replay_time_budget)
    per_day = traffic_per_day(len(logged), logged[-1].at, ctx.repo.clock())
    summary = summarize(rows, per_day=per_day, plan=load_catalog().plan(proposed.plan),
                        stopped_early=stopped, requested=count)
    ctx.repo.record_audit(tenant_id, Change(caller.actor, caller.role, "replay", reason),
                          {"replayed": [None, len(rows)]})
    return {"generator": "live" if pipeline.live else "offline",
            "questions": [r.as_dict() for r in rows], "summary": summary}


# ---- explain ------------------------------------------------------------------------------
def explain_tenant(ctx: ApiContext, tenant_id: str) -> dict[str, Any]:
    """Per field: the effective value, where it comes from, who may change it, plan limits."""
    resolved = ctx.repo.get_record(tenant_id)
    return explain(tenant_id, resolved.config, resolved.version,
                   load_catalog().plan(resolved.config.plan),
                   ctx.repo.get_audit_log(tenant_id, limit=AUDIT_SCAN),
                   ctx.repo.get_history(tenant_id))
