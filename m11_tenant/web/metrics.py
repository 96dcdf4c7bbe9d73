"""Prometheus metrics, one registry per app (tests create many apps in one process).

What the course's monitoring list asks for: config load latency (p50/p95/p99 come from the
histogram), cache hit rate, validation error rate, model cost per tenant; plus config
changes, queries, tokens, rate-limit refusals and cost alerts.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from m11_tenant.repository import TenantConfigRepository
from m11_tenant.schema import validate_tenant_id

LOAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0)
NO_TENANT = "_none"
COST_ALERTS_SCRAPED = 10_000  # newest alerts read per scrape: bounded work per request


def tenant_label(tenant_id: object) -> str:
    """A valid tenant id, else ``_none``: a malformed id must not become a label."""
    try:
        return validate_tenant_id(tenant_id)
    except Exception:
        return NO_TENANT


class _CacheCollector(Collector):
    """Reads the repository's own cache counters at scrape time (no double counting)."""

    def __init__(self, repo: TenantConfigRepository):
        self.repo = repo

    def collect(self) -> Iterator[CounterMetricFamily]:
        cache = self.repo.cache
        for name, value, doc in (("hits", cache.hits, "Redis cache hits"),
                                 ("misses", cache.misses, "Redis cache misses"),
                                 ("errors", cache.errors, "Redis errors (served from the DB)")):
            yield CounterMetricFamily(f"m11_cache_{name}", doc, value=value)


class _CostAlertCollector(Collector):
    """Cost alerts as recorded in the store (so every process reports the same figures):
    per tenant and threshold, how many months reached it."""

    def __init__(self, repo: TenantConfigRepository):
        self.repo = repo

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "m11_cost_alerts", "Months in which a tenant's spend reached a cost-alert "
            "threshold (percent of its monthly budget)", labels=["tenant", "threshold_pct"])
        alerts = self.repo.cost_alerts(limit=COST_ALERTS_SCRAPED)
        counts = collections.Counter((a.tenant_id, str(a.threshold_pct)) for a in alerts)
        for (tenant, pct), months in sorted(counts.items()):
            family.add_metric([tenant, pct], months)
        yield family


class ApiMetrics:
    """The app's metrics and the few calls the routes make to update them."""

    def __init__(self, repo: TenantConfigRepository):
        self.registry = CollectorRegistry()
        r = self.registry
        self.config_load = Histogram(
            "m11_config_load_seconds", "Time to load a tenant's effective config",
            ["source"], buckets=LOAD_BUCKETS, registry=r)
        self.near_load = self.config_load.labels("near")  # bound once: the hot path's
        self.validation_errors = Counter(
            "m11_validation_errors", "Requests refused as invalid (422)", ["tenant"],
            registry=r)
        self.config_changes = Counter(
            "m11_config_changes", "Stored config changes", ["tenant", "action"], registry=r)
        self.queries = Counter(
            "m11_queries", "Queries by outcome (ok or the error code)", ["tenant", "outcome"],
            registry=r)
        self.tokens = Counter(
            "m11_tokens", "Tokens used by queries", ["tenant", "kind"], registry=r)
        self.cost = Counter(
            "m11_cost_usd", "Model cost of queries in USD", ["tenant"], registry=r)
        self.rate_limited = Counter(
            "m11_rate_limited", "Requests refused with 429", ["kind"], registry=r)
        r.register(_CacheCollector(repo))
        r.register(_CostAlertCollector(repo))

    def validation_error(self, tenant_id: object) -> None:
        self.validation_errors.labels(tenant_label(tenant_id)).inc()

    def config_changed(self, tenant_id: str, action: str) -> None:
        self.config_changes.labels(tenant_id, action).inc()

    def query_done(self, tenant_id: str, prompt_tokens: int, completion_tokens: int,
                   cost_usd: float) -> None:
        self.queries.labels(tenant_id, "ok").inc()
        self.tokens.labels(tenant_id, "prompt").inc(prompt_tokens)
        self.tokens.labels(tenant_id, "completion").inc(completion_tokens)
        self.cost.labels(tenant_id).inc(cost_usd)
