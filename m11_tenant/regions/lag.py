"""Replication lag per region pair: commit-to-apply percentiles, backlog, and an alert.

Pure bookkeeping with bounded memory (a window of recent samples per pair). The backlog
and the age of the oldest unapplied change come from the transport at read time; a pair
whose destination is cut off has no new samples, so the age is what makes its alert fire.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.stats import percentile

WINDOW = 4096


@dataclass(frozen=True)
class PairLag:
    """Lag from ``source`` (where a change was committed) to ``target`` (where it was applied)."""

    source: str
    target: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    backlog: int
    oldest_unapplied_ms: float
    alert: bool

    def as_dict(self) -> dict[str, float | int | bool | str]:
        return {"source": self.source, "target": self.target, "p50_ms": self.p50_ms,
                "p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
                "samples": self.samples, "backlog": self.backlog,
                "oldest_unapplied_ms": self.oldest_unapplied_ms, "alert": self.alert}


class LagMonitor:
    """Recent commit-to-apply times per (source, target) pair, and the alert threshold.

    ``alert_ms``: a pair alerts when the p95 lag of the changes applied in the last
    ``alert_window_ms``, or the age of its oldest change not yet applied, is above it;
    ``None`` turns alerts off. The time window is what lets an alert clear once a region
    has caught up, even if little traffic follows; the percentiles reported beside it are
    over the last ``window`` samples, whenever they came.
    """

    def __init__(self, *, alert_ms: float | None = 5_000.0, window: int = WINDOW,
                 alert_window_ms: float = 60_000.0):
        self.window, self.alert_window_ms = window, alert_window_ms
        self.alert_ms = alert_ms
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    @property
    def alert_ms(self) -> float | None:
        return self._alert_ms

    @alert_ms.setter
    def alert_ms(self, value: float | None) -> None:
        if value is not None and not value >= 0:
            raise ConfigValidationError(FieldError(
                "alert_ms", f"the lag alert threshold must be >= 0 ms (or None), got {value}",
                "alert_ms"))
        self._alert_ms = value

    def record(self, source: str, target: str, lag_ms: float, at_ms: float = 0.0) -> None:
        """One change from ``source`` applied in ``target`` ``lag_ms`` after its commit, at
        ``at_ms`` on the applying region's clock."""
        with self._lock:
            self._samples.setdefault((source, target), deque(maxlen=self.window)).append(
                (float(at_ms), max(0.0, float(lag_ms))))

    def samples(self, source: str, target: str) -> list[float]:
        """The recent lags of one pair, oldest first (for plots)."""
        with self._lock:
            return [lag for _at, lag in self._samples.get((source, target), ())]

    def summary(self, source: str, target: str, *, backlog: int = 0,
                oldest_unapplied_ms: float = 0.0, now_ms: float | None = None) -> PairLag:
        """The pair's figures; ``now_ms`` (the target's clock) limits the alert's p95 to the
        last ``alert_window_ms`` (``None``: every sample counts)."""
        with self._lock:
            timed = list(self._samples.get((source, target), ()))
        ordered = sorted(lag for _at, lag in timed)
        recent = ordered if now_ms is None else sorted(
            lag for at, lag in timed if now_ms - at <= self.alert_window_ms)
        alert = self.alert_ms is not None and max(
            percentile(recent, 95), oldest_unapplied_ms) > self.alert_ms
        return PairLag(source, target, percentile(ordered, 50), percentile(ordered, 95),
                       percentile(ordered, 99), ordered[-1] if ordered else 0.0,
                       len(ordered), backlog, oldest_unapplied_ms, alert)

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
