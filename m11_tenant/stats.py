"""Config-load statistics: latency percentiles, cache hit rate, validation errors.

Pure bookkeeping with bounded memory (a fixed window of recent latencies per tenant), so
it can run on every request of a long-lived process. Near-cache hits are counted exactly
but timed one in :data:`SAMPLE_EVERY`: timing and recording a hit cost more than the hit.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

WINDOW = 1024
TRACKED_TENANTS = 1000  # per-tenant latency windows kept (the most recently read tenants)
SAMPLE_EVERY = 16  # near-cache hits: one in this many is timed (a power of two)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def summarize(latencies_us: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_us)
    return {"p50_us": percentile(ordered, 50), "p95_us": percentile(ordered, 95),
            "p99_us": percentile(ordered, 99), "samples": len(ordered)}


@dataclass
class LoadStats:
    """Counts and recent latencies of config loads, overall and per tenant.

    Latency windows are kept for the ``tracked_tenants`` most recently read tenants only:
    a window per tenant for 100,000 tenants would cost hundreds of MB.
    """

    window: int = WINDOW
    tracked_tenants: int = TRACKED_TENANTS
    loads: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    validation_errors: Counter[str] = field(default_factory=Counter)
    _latencies: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _overall: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    _ticks: int = 0

    def due(self) -> bool:
        """True once every :data:`SAMPLE_EVERY` calls: time this load (racy by design: two
        threads may share a tick, which only shifts which hit is sampled)."""
        self._ticks += 1
        return not self._ticks & (SAMPLE_EVERY - 1)

    def count_load(self, tenant_id: str, source: str) -> None:
        """Count a load without timing it (the counts stay exact)."""
        self.loads[tenant_id] += 1
        self.sources[source] += 1

    def record_load(self, tenant_id: str, source: str, micros: float) -> None:
        self.loads[tenant_id] += 1
        self.sources[source] += 1
        self._overall.append(micros)
        window = self._latencies.get(tenant_id)
        if window is None:
            window = self._latencies[tenant_id] = deque(maxlen=self.window)
            if len(self._latencies) > self.tracked_tenants:
                self._latencies.popitem(last=False)
        else:
            self._latencies.move_to_end(tenant_id)
        window.append(micros)

    def record_validation_error(self, tenant_id: str) -> None:
        self.validation_errors[tenant_id] += 1

    def cache_hit_rate(self) -> float:
        cached = self.sources["near"] + self.sources["cache"]
        total = sum(self.sources.values())
        return cached / total if total else 0.0

    def snapshot(self, tenant_id: str | None = None) -> dict[str, object]:
        """Overall figures, or one tenant's."""
        if tenant_id is not None:
            return {"loads": self.loads[tenant_id],
                    "validation_errors": self.validation_errors[tenant_id],
                    "latency": summarize(list(self._latencies.get(tenant_id, ())))}
        return {"loads": sum(self.loads.values()),
                "sources": dict(sorted(self.sources.items())),
                "cache_hit_rate": round(self.cache_hit_rate(), 4),
                "validation_errors": sum(self.validation_errors.values()),
                "latency": summarize(list(self._overall))}
