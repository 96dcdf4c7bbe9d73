"""One region as a long-running process: its store, its repository, its apply loop.

What ``python -m m11_tenant serve --region eu --regions us,eu,ap`` runs behind the API.
Unlike :func:`~m11_tenant.regions.open_cluster`, which opens every region in one process,
this opens only the local region; the others are other processes (other hosts), reached
only through the change streams on the one Redis they all share. Nothing else is shared:
each region has its own database (a SQLite file or a PostgreSQL database/schema).

The apply loop runs in a background thread: it retries what the outbox still holds, reads
and applies the peers' changes, acknowledges them, and trims this region's own stream.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from m11_tenant.cache import make_redis_client
from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.regions.cluster import (
    Region,
    RegionRepository,
    check_regions,
    stream_client,
    wall_clock_ms,
)
from m11_tenant.regions.lag import LagMonitor
from m11_tenant.regions.merge import Strategy, check_strategy
from m11_tenant.regions.transport import StreamTransport
from m11_tenant.settings import Settings

NEEDS_REDIS = (
    "a region process replicates through Redis Streams that every region reaches, so it "
    "needs REDIS_URL=redis://host:6379/N (the same Redis for every region); the in-process "
    "fakeredis used when REDIS_URL is unset lives inside one process and cannot be shared")


class RegionService:
    """The local region of a multi-region deployment, with its apply loop in a thread."""

    def __init__(self, region: Region, *, block_ms: int = 100, trim_every_s: float = 5.0):
        self.region, self.block_ms, self.trim_every_s = region, block_ms, trim_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def repository(self) -> RegionRepository:
        """Reads and writes of this region (writes replicate; reads are local)."""
        return self.region.repository

    def start(self) -> None:
        """Start the apply loop (publishing first whatever a previous run left unsent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.region.run, args=(self._stop,), name=f"region-{self.region.name}",
            kwargs={"block_ms": self.block_ms, "trim_every_s": self.trim_every_s}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; what is unsent or unacknowledged waits for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.region.close()


def open_region(name: str, regions: Sequence[str], *, redis_url: str | None,
                database_url: str, strategy: str = "field-merge",
                namespace: str = "m11:regions", lag_alert_ms: float | None = 5_000.0,
                lag_alert_window_s: float = 60.0, history_limit: int = 10,
                clock_ms: Callable[[], int] | None = None, block_ms: int = 100
                ) -> RegionService:
    """Open region ``name`` of ``regions`` on its own database (the loop is not started).

    Args:
        name: this process's region; one of ``regions``.
        regions: every region's name; all processes must be given the same list.
        redis_url: the Redis carrying the change streams, reachable by every region
            (required: see :data:`NEEDS_REDIS`).
        database_url: this region's own ``sqlite:///…`` file or ``postgresql://…``
            database (or schema, via ``?options=-csearch_path%3D<schema>``).
        strategy, namespace, lag_alert_ms, history_limit, clock_ms: as for
            :func:`~m11_tenant.regions.open_cluster`; every region must use the same
            strategy and namespace.
        lag_alert_window_s: the alert looks at the p95 lag of the changes applied in this
            many last seconds (and at the oldest change still waiting).
        block_ms: how long one read of the streams waits for new entries.

    Raises:
        ConfigValidationError: a bad region list, ``name`` not in it, no Redis, or an
            unknown strategy -- said before anything is opened.
    """
    names, chosen = _checked(name, regions, redis_url, strategy)
    transport = StreamTransport(stream_client(redis_url or ""), namespace, names)
    region = Region(name, database_url=database_url, transport=transport,
                    cache_client=make_redis_client(redis_url),  # type: ignore[arg-type]
                    cache_prefix=f"{namespace}:cache:", strategy=chosen,
                    clock_ms=clock_ms or wall_clock_ms, lag=LagMonitor(
                        alert_ms=lag_alert_ms, alert_window_ms=lag_alert_window_s * 1000),
                    history_limit=history_limit)
    return RegionService(region, block_ms=block_ms)


def region_from_settings(settings: Settings) -> RegionService:
    """:func:`open_region` from ``M11_REGION``, ``M11_REGIONS``, ``M11_REGION_*``,
    ``DATABASE_URL`` and ``REDIS_URL`` (environment or ``.env``)."""
    name, names = check_region_settings(settings)
    return open_region(name, names, redis_url=settings.redis_url,
                       database_url=settings.database_url,
                       strategy=settings.m11_region_strategy,
                       namespace=settings.m11_region_namespace,
                       lag_alert_ms=settings.m11_region_lag_alert_ms,
                       lag_alert_window_s=settings.m11_region_lag_alert_window_s,
                       history_limit=settings.history_limit)


def check_region_settings(settings: Settings) -> tuple[str, list[str]]:
    """This process's region and the region list from the settings, checked, so that
    ``serve`` can refuse a bad combination before it starts a server.

    Raises:
        ConfigValidationError: what is missing or wrong, and what to set.
    """
    if not settings.m11_region:
        raise ConfigValidationError(FieldError(
            "M11_REGION", "no region given: use --region NAME or set M11_REGION", "missing"))
    if not settings.m11_regions:
        raise ConfigValidationError(FieldError(
            "M11_REGIONS", f"region {settings.m11_region!r} needs the list of every region: "
            "--regions us,eu,ap or M11_REGIONS=us,eu,ap", "missing"))
    names = [part.strip() for part in settings.m11_regions.split(",") if part.strip()]
    _checked(settings.m11_region, names, settings.redis_url, settings.m11_region_strategy)
    return settings.m11_region, names


def _checked(name: str, regions: Sequence[str], redis_url: str | None,
             strategy: str) -> tuple[list[str], Strategy]:
    names = check_regions(regions)
    if name not in names:
        raise ConfigValidationError(FieldError(
            "M11_REGION", f"region {name!r} is not in the region list {','.join(names)}; "
            "give every process the same list, including its own region", "region"))
    if not redis_url:
        raise ConfigValidationError(FieldError("REDIS_URL", NEEDS_REDIS, "missing"))
    return names, check_strategy(strategy)
