"""Replay: a tenant's logged questions under its current and a proposed config, compared.

:func:`replay` runs each question twice through :meth:`RagPipeline.run` (which writes
nothing) and :func:`compare` turns the two results into one row; :func:`summarize` adds
the rows up and projects the cost difference onto a month of the tenant's traffic. Only
:func:`replay` does work; ``compare``, ``traffic_per_day`` and ``summarize`` are pure.

Definitions (the README repeats them):

- **sources changed**: a source was gained or lost (a new order alone is no change);
- **source overlap** of one question: ``|before ∩ after| / |before ∪ after|`` of the
  retrieved source ids (1.0 = the same passages, 0.0 = none in common);
- **answer changed**: the answer text differs;
- **cost delta**: the sum over replayed questions of ``cost_after - cost_before``;
- **traffic rate**: logged questions per day since the oldest one still logged (at least
  one day is assumed, so a burst in the last hour is not read as a huge daily rate);
- **projected monthly queries**: the rate × 30, but no more than the plan's daily quota × 30
  (queries past the quota are refused, so they cost nothing);
- **projected monthly cost delta**: the mean cost delta per replayed question × projected
  monthly queries, set against the plan's monthly budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from m11_tenant.rag.pipeline import QueryResult, RagPipeline
from m11_tenant.store import LoggedQuery

#: Most questions one replay may re-run.
MAX_REPLAY = 200
#: Seconds a replay may take before it stops and reports what it has (default).
REPLAY_TIME_BUDGET_S = 20.0
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class ReplayedQuestion:
    """One logged question, answered under the current and under the proposed config."""

    question: str
    sources_before: list[str]
    sources_after: list[str]
    sources_gained: list[str]
    sources_lost: list[str]
    source_overlap: float
    answer_changed: bool
    tokens_before: int
    tokens_after: int
    cost_before_usd: float
    cost_after_usd: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(question: str, before: QueryResult, after: QueryResult) -> ReplayedQuestion:
    """One row of the replay report from the two answers to ``question``."""
    ids_before = [s.id for s in before.sources]
    ids_after = [s.id for s in after.sources]
    union = set(ids_before) | set(ids_after)
    overlap = len(set(ids_before) & set(ids_after)) / len(union) if union else 1.0
    return ReplayedQuestion(
        question=question, sources_before=ids_before, sources_after=ids_after,
        sources_gained=[i for i in ids_after if i not in ids_before],
        sources_lost=[i for i in ids_before if i not in ids_after],
        source_overlap=round(overlap, 4), answer_changed=before.answer != after.answer,
        tokens_before=before.usage.total_tokens, tokens_after=after.usage.total_tokens,
        cost_before_usd=before.cost_usd, cost_after_usd=after.cost_usd)


def replay(pipeline: RagPipeline, current: Any, proposed: Any,
           entries: Sequence[LoggedQuery], *, tenant_id: str,
           time_budget_s: float = REPLAY_TIME_BUDGET_S,
           timer: Callable[[], float] = time.perf_counter) -> tuple[list[ReplayedQuestion], bool]:
    """Re-run ``entries`` (newest first) under both configs; stop when the budget is spent.

    Returns the rows and whether the time budget cut the replay short (at least one
    question always runs). Nothing is written: ``RagPipeline.run`` records no usage.
    """
    rows: list[ReplayedQuestion] = []
    started = timer()
    for entry in entries:
        if rows and timer() - started > time_budget_s:
            return rows, True
        before = pipeline.run(current, entry.question, tenant_id=tenant_id)
        after = pipeline.run(proposed, entry.question, tenant_id=tenant_id)
        rows.append(compare(entry.question, before, after))
    return rows, False


def traffic_per_day(logged: int, oldest_at: str | None, now: datetime) -> float:
    """Logged questions per day since the oldest still logged (at least one day)."""
    if logged == 0 or oldest_at is None:
        return 0.0
    days = (now - datetime.fromisoformat(oldest_at)).total_seconds() / 86_400
    return logged / max(1.0, days)


def summarize(rows: Sequence[ReplayedQuestion], *, per_day: float, plan: Any,
              stopped_early: bool = False, requested: int | None = None) -> dict[str, Any]:
    """The replay's totals and its monthly cost projection against ``plan``'s budget."""
    n = len(rows)
    before = sum(r.cost_before_usd for r in rows)
    after = sum(r.cost_after_usd for r in rows)
    monthly = min(per_day, plan.daily_queries) * DAYS_PER_MONTH
    mean_before, mean_after = (before / n, after / n) if n else (0.0, 0.0)
    month_after = mean_after * monthly
    return {
        "replayed": n,
        "requested": n if requested is None else requested,
        "stopped_early": stopped_early,
        "sources_changed_share": round(
            sum(bool(r.sources_gained or r.sources_lost) for r in rows) / n, 4) if n else 0.0,
        "mean_source_overlap": round(sum(r.source_overlap for r in rows) / n, 4) if n else 1.0,
        "answers_changed_share": round(sum(r.answer_changed for r in rows) / n, 4) if n else 0.0,
        "cost_before_usd": round(before, 8),
        "cost_after_usd": round(after, 8),
        "cost_delta_usd": round(after - before, 8),
        "logged_queries_per_day": round(per_day, 4),
        "projected_monthly_queries": round(monthly, 2),
        "projected_monthly_cost_before_usd": round(mean_before * monthly, 6),
        "projected_monthly_cost_after_usd": round(month_after, 6),
        "projected_monthly_cost_delta_usd": round((mean_after - mean_before) * monthly, 6),
        "monthly_budget_usd": plan.monthly_budget_usd,
        "projected_budget_share_after": round(month_after / plan.monthly_budget_usd, 4),
    }
