"""Replication lag for Prometheus: a collector an API registers, read at scrape time.

Kept apart from the rest of the package so that only a process serving ``/metrics`` needs
``prometheus_client``::

    from m11_tenant.regions.metrics import ReplicationCollector
    registry.register(ReplicationCollector(cluster))          # every pair
    registry.register(ReplicationCollector(cluster.region("eu")))  # pairs into eu only
    registry.register(RegionStateCollector(cluster.region("eu")))  # eu's apply-loop counters

A scrape never fails because Redis is away: the lag families are then empty and
``m11_replication_streams_up`` is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from m11_tenant.errors import ServiceUnavailableError
from m11_tenant.regions.lag import PairLag


class LagSource(Protocol):
    """A cluster or a region repository: both know their pairs' lag and the threshold."""

    lag_alert_ms: float | None

    def lag(self) -> dict[str, PairLag]: ...


class _Counting(Protocol):
    def stats(self) -> dict[str, Any]: ...


class RegionStateSource(Protocol):
    """A region's repository: its ``region`` keeps the apply loop's counters. (A protocol,
    not :class:`~m11_tenant.regions.cluster.RegionRepository`, whose ``metrics_text`` imports
    this module: the arrow points one way.)"""

    @property
    def region(self) -> _Counting: ...


class ReplicationCollector(Collector):
    """Yields the lag figures of every pair of ``source`` whenever Prometheus scrapes."""

    def __init__(self, source: LagSource):
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pairs, reachable = list(self.source.lag().values()), 1.0
        except ServiceUnavailableError:  # a scrape must answer while Redis is away
            pairs, reachable = [], 0.0
        yield GaugeMetricFamily("m11_replication_streams_up",
                                "1 when the change streams' Redis answers", value=reachable)
        labels = ["source", "target"]
        lag = GaugeMetricFamily("m11_replication_lag_ms",
                                "Commit-to-apply time of replicated config changes (recent "
                                "window)", labels=[*labels, "quantile"])
        for pair in pairs:
            for quantile, value in (("0.5", pair.p50_ms), ("0.95", pair.p95_ms),
                                    ("0.99", pair.p99_ms), ("1", pair.max_ms)):
                lag.add_metric([pair.source, pair.target, quantile], value)
        yield lag
        for name, doc, attribute in (
            ("m11_replication_lag_samples", "Changes in the lag window", "samples"),
            ("m11_replication_backlog", "Changes committed at source not yet applied at target",
             "backlog"),
            ("m11_replication_oldest_unapplied_ms", "Age of the oldest change not yet applied",
             "oldest_unapplied_ms"),
            ("m11_replication_lag_alert", "1 when the pair's lag is above the alert threshold",
             "alert"),
        ):
            family = GaugeMetricFamily(name, doc, labels=labels)
            for pair in pairs:
                family.add_metric([pair.source, pair.target], float(getattr(pair, attribute)))
            yield family
        if self.source.lag_alert_ms is not None:
            yield GaugeMetricFamily("m11_replication_lag_alert_threshold_ms",
                                    "The lag alert threshold", value=self.source.lag_alert_ms)


class RegionStateCollector(Collector):
    """The apply loop's counters of one region process: what ``/metrics`` shows beside the
    lag (applied changes, unsent outbox, errors, conflicts detected here)."""

    def __init__(self, repository: RegionStateSource):
        self.repository = repository

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self.repository.region.stats()
        for name, doc, key in (
            ("m11_replication_applied", "Peer changes applied here", "applied"),
            ("m11_replication_apply_seconds", "Time spent merging, storing and acknowledging "
             "peer changes (not waiting for them)", "apply_seconds"),
            ("m11_replication_publish_errors", "Publishes after a commit that failed (the "
             "events waited in the outbox)", "publish_errors"),
            ("m11_replication_transport_errors", "Apply-loop rounds that found Redis "
             "unreachable", "transport_errors"),
            ("m11_replication_apply_errors", "Apply-loop rounds that failed otherwise",
             "apply_errors"),
        ):
            yield CounterMetricFamily(name, doc, value=state[key])
        yield GaugeMetricFamily("m11_replication_outbox", "Changes committed here, not yet "
                                "on the stream", value=state["outbox"])
        yield GaugeMetricFamily("m11_replication_conflicts", "Conflicts detected here",
                                value=state["conflicts"])


def metrics_text(source: LagSource) -> str:
    """The figures of ``source`` in Prometheus' text format, on their own."""
    registry = CollectorRegistry()
    registry.register(ReplicationCollector(source))
    return generate_latest(registry).decode()
