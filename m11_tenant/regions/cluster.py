"""Regions, each with its own store and cache, kept in sync over Redis Streams.

A :class:`Cluster` is what a notebook or a test drives: it opens every region, routes
the change events between them, and can cut a region off (``partition``) and reconnect it
(``heal``). In production each region would be its own process running
:meth:`Region.run`; here they can all live in one process, which is what makes a
partition easy to show, but nothing on the data path is shared except Redis.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fakeredis
import redis

from m11_tenant.cache import ConfigCache
from m11_tenant.errors import ConfigValidationError, FieldError, ServiceUnavailableError
from m11_tenant.regions.clock import HybridLogicalClock
from m11_tenant.regions.journal import ReplicaJournal
from m11_tenant.regions.lag import LagMonitor, PairLag
from m11_tenant.regions.merge import (
    ChangeEvent,
    Conflict,
    ReplicaState,
    Strategy,
    check_strategy,
)
from m11_tenant.regions.store import open_replica_store
from m11_tenant.regions.transport import Delivery, StreamTransport
from m11_tenant.repository import TenantConfigRepository
from m11_tenant.store import Change

REGION_RULE = "2-16 characters: lowercase letters, digits or '-', starting with a letter"
_REGION_RE = re.compile(r"[a-z][a-z0-9-]{1,15}")
_log = logging.getLogger(__name__)


def check_regions(regions: Sequence[str]) -> list[str]:
    """The region names, checked: two or more, distinct, each following :data:`REGION_RULE`.

    Raises:
        ConfigValidationError: naming the bad name or the problem with the list.
    """
    names = list(regions)
    for name in names:
        if not isinstance(name, str) or not _REGION_RE.fullmatch(name):
            raise ConfigValidationError(FieldError(
                "regions", f"region name {name!r} is not valid; use {REGION_RULE}", "region"))
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigValidationError(FieldError(
            "regions", f"need two or more distinct region names, got {names}", "regions"))
    return names


def stream_client(redis_url: str) -> redis.Redis:
    """A client for the change streams: blocking reads need a longer socket timeout than
    the config cache's, and a dead Redis must still fail fast on connect."""
    return redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)


def wall_clock_ms() -> int:
    """The physical clock regions use unless one is injected."""
    return time.time_ns() // 1_000_000


class RegionRepository(TenantConfigRepository):
    """The repository of one region: local reads and writes, replicated after each commit.

    Everything a :class:`~m11_tenant.repository.TenantConfigRepository` offers works
    unchanged; each committed write also leaves a change event in the region's outbox
    (same transaction) and is published right after the commit.
    """

    store: ReplicaJournal

    def __init__(self, store: ReplicaJournal, cache: ConfigCache, region: Region):
        super().__init__(store, cache)
        self.region = region

    @property
    def name(self) -> str:
        return self.region.name

    def apply_remote(self, events: Sequence[ChangeEvent]) -> str:
        """Apply changes committed in other regions to one tenant; returns ``write``,
        ``delete`` or ``keep`` (duplicates and outdated changes).

        The merged config goes through this repository's own write path, so its caches are
        dropped (and announced) exactly as after a local write; the replica state is stored
        in the same transaction.
        """
        store = self.store
        origins = sorted({event.origin for event in events})
        newest = max(events, key=lambda event: event.stamp)
        actor = f"replication:{'+'.join(origins)}"
        reason = (f"{len(events)} change(s) from region {', '.join(origins)}, newest "
                  f"{newest.stamp}")
        with store.exclusive():
            plan = store.plan_remote(events, self.region.strategy)
            tenant_id = plan.tenant_id
            if plan.action == "keep":
                store.keep(plan)
                return plan.action
            with store.recording(plan):
                if plan.action == "delete":
                    self.delete_config(tenant_id, actor=actor, role="system", reason=reason)
                else:
                    target, change = plan.target, Change(actor, "system", "replicate", reason)
                    self._commit(tenant_id, lambda: store.write(
                        tenant_id, lambda _current: target, change))
        return plan.action

    def conflicts(self, tenant_id: str | None = None) -> list[Conflict]:
        """Conflicts this region detected while applying other regions' changes."""
        return self.store.conflicts(tenant_id)

    def replica_state(self, tenant_id: str) -> ReplicaState:
        """The field registers, tombstone and newest config this region holds for a tenant."""
        return self.store.state(tenant_id)

    @property
    def lag_alert_ms(self) -> float | None:
        return self.region.lag_monitor.alert_ms

    def lag(self) -> dict[str, PairLag]:
        """Lag of the changes coming into this region, per ``"source->target"`` pair (what
        a region process can see: the streams, not the other regions' outboxes)."""
        return {f"{source}->{self.name}": self.region.lag_from(source)
                for source in self.region.transport.peers(self.name)}

    def health(self) -> dict[str, Any]:
        """The repository's health plus a ``replication`` service, and its figures under
        ``detail`` (for the admin's eyes only: region names, counts and lag, no hosts).

        ``replication`` is ``ok``; ``degraded: …`` while a pair's lag alert fires or the
        apply loop keeps failing; ``down: …`` while the streams' Redis is unreachable (the
        region still serves and accepts writes; they wait in its outbox).
        """
        report = super().health()
        replication = self.region.stats()
        try:
            pairs = self.lag()
        except ServiceUnavailableError:
            pairs = {}
            status = "down: the change streams are unreachable; writes wait in the outbox"
        else:
            alerts = sorted(name for name, pair in pairs.items() if pair.alert)
            status = "ok"
            if alerts:
                status = f"degraded: lag above {self.lag_alert_ms:.0f} ms on {', '.join(alerts)}"
            elif replication["last_error"]:
                status = "degraded: the apply loop is retrying after an error"
        replication["lag"] = {name: pair.as_dict() for name, pair in pairs.items()}
        replication["lag_alert_ms"] = self.lag_alert_ms
        report["services"]["replication"] = status
        if status != "ok":
            report["status"] = "degraded"
        report["detail"] = {"replication": replication}
        return report

    def get_stats(self, tenant_id: str | None = None) -> dict[str, Any]:
        """The repository's stats, plus this region's replication figures."""
        snapshot = super().get_stats(tenant_id)
        if tenant_id is None:
            replication = self.region.stats()
            try:
                replication["lag"] = {pair: lag.as_dict() for pair, lag in self.lag().items()}
            except ServiceUnavailableError as exc:  # stats must answer while Redis is away
                replication["lag"], replication["lag_error"] = {}, str(exc)
            snapshot["replication"] = replication
        return snapshot


class Region:
    """One region: a store (SQLite file or PostgreSQL schema), a cache, a clock, and its
    end of the transport."""

    def __init__(self, name: str, *, database_url: str, transport: StreamTransport,
                 cache_client: redis.Redis, cache_prefix: str, strategy: Strategy,
                 clock_ms: Callable[[], int], lag: LagMonitor, history_limit: int = 10):
        self.name, self.transport, self.strategy = name, transport, strategy
        self.clock_ms, self.lag_monitor = clock_ms, lag
        self.connected = True
        self.hlc = HybridLogicalClock(name)
        self.store = open_replica_store(database_url, region=name, hlc=self.hlc,
                                        clock_ms=clock_ms, history_limit=history_limit)
        cache = ConfigCache(cache_client, prefix=f"{cache_prefix}{name}:")
        self.repository = RegionRepository(self.store, cache, self)
        self.store.after_commit = self.publish_quietly
        self.applied = 0
        self.apply_seconds = 0.0  # busy time: merging, storing, acknowledging (not reading)
        self.publish_errors = self.transport_errors = self.apply_errors = 0
        self.last_error: str | None = None
        self._groups_ready = False  # the apply loop (re)creates missing consumer groups
        self._pending_checked = False  # after a (re)start, re-read unacknowledged entries first
        self._publish_lock = threading.Lock()

    # ---- sending ------------------------------------------------------------------------
    def publish(self) -> int:
        """Send what the outbox holds; returns how many events went out (0 when cut off)."""
        if not self.connected:
            return 0
        sent = 0
        with self._publish_lock:
            while batch := self.store.outbox():
                for _id, event in batch:
                    self.transport.publish(event)
                self.store.drop_from_outbox([row_id for row_id, _ in batch])
                sent += len(batch)
        return sent

    def publish_quietly(self) -> None:
        """Publish after a commit; if that fails the events wait in the outbox for the
        apply loop. The write is committed either way, so its caller must not see an error.
        """
        try:
            self.publish()
        except ServiceUnavailableError:
            self.publish_errors += 1
        except Exception:
            self.publish_errors += 1
            _log.exception("region %s: publishing after a commit failed; the apply loop "
                           "retries", self.name)

    # ---- receiving ----------------------------------------------------------------------
    def poll(self, *, count: int = 200, block_ms: int | None = None) -> int:
        """Apply one batch of peer events and acknowledge each; returns how many.

        After any failure the next poll re-reads this region's pending entries first: an
        entry may have been applied but not acknowledged (the XACK failed), or delivered
        by Redis with the reply lost -- either way only the pending list still has it.
        """
        if not self.connected:
            return 0
        try:
            return self._poll(count, block_ms)
        except Exception:
            self._pending_checked = False
            raise

    def _poll(self, count: int, block_ms: int | None) -> int:
        deliveries = []
        if not self._pending_checked:
            deliveries = self.transport.read(self.name, count=count, pending=True)
            self._pending_checked = not deliveries
        if not deliveries:
            deliveries = self.transport.read(self.name, count=count, block_ms=block_ms)
        started = time.perf_counter()
        by_tenant: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_tenant.setdefault(delivery.event.tenant_id, []).append(delivery)
        for batch in by_tenant.values():  # one write per tenant per batch
            self.repository.apply_remote([delivery.event for delivery in batch])
            applied_at = self.clock_ms()
            for delivery in batch:
                self.lag_monitor.record(delivery.origin, self.name,
                                        applied_at - delivery.event.committed_at_ms, applied_at)
            self.applied += len(batch)
        # One XACK per peer stream once the whole batch is stored (a crash before it means
        # the batch is read again: applying is idempotent).
        for origin in {delivery.origin for delivery in deliveries}:
            self.transport.ack(self.name, origin, *(
                d.message_id for d in deliveries if d.origin == origin))
        if deliveries:
            self.apply_seconds += time.perf_counter() - started
        return len(deliveries)

    def run(self, stop: threading.Event, *, block_ms: int = 20,
            trim_every_s: float | None = None) -> None:
        """The apply loop of a region process: publish, then read and apply, until stopped.

        A passing fault must not end it, or the region would silently stop replicating while
        it keeps serving: Redis away -> wait and retry (the outbox and the pending entries
        keep everything); Redis back without the consumer groups -> create them again;
        anything else (the database away, say) is logged, kept in ``last_error`` and retried
        after a pause -- unacknowledged entries are read again, and applying is idempotent.
        ``trim_every_s``: also drop the entries of this region's own stream that every peer
        has acknowledged, that often (a :class:`Cluster` trims in :meth:`Cluster.sync`).
        """
        next_trim = time.monotonic()
        while not stop.is_set():
            try:
                if not self._groups_ready:
                    self.transport.ensure_groups()
                    self._groups_ready = True
                self.publish()
                self.poll(block_ms=block_ms)
                if trim_every_s is not None and time.monotonic() >= next_trim:
                    self.transport.trim(self.name)
                    next_trim = time.monotonic() + trim_every_s
                self.last_error = None
            except ServiceUnavailableError:
                self.transport_errors += 1
                self.last_error = "Redis is unreachable; changes wait in the outbox and streams"
                stop.wait(0.5)
            except Exception as exc:  # the loop outlives any one fault
                if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                    self._groups_ready = False  # Redis lost its data: recreate the groups
                self.apply_errors += 1
                self.last_error = f"{type(exc).__name__} in the apply loop; retrying"
                _log.exception("region %s: apply loop error; retrying in 0.5 s", self.name)
                stop.wait(0.5)

    # ---- figures ------------------------------------------------------------------------
    def unsent(self) -> tuple[int, int | None]:
        """Events in this region's outbox, and the commit time (ms) of the oldest."""
        first = self.store.outbox(limit=1)
        if not first:
            return 0, None
        return self.store.outbox_size(), first[0][1].committed_at_ms

    def lag_from(self, source: str, *,
                 unsent: tuple[int, int | None] = (0, None)) -> PairLag:
        """Lag of changes from ``source`` into this region; ``unsent``: the source's outbox."""
        backlog, oldest = self.transport.backlog(source, self.name)
        count, first = unsent
        if count:
            backlog += count
            oldest = first if oldest is None else min(oldest, first or oldest)
        now = self.clock_ms()
        age = 0.0 if oldest is None else float(max(0, now - oldest))
        return self.lag_monitor.summary(source, self.name, backlog=backlog,
                                        oldest_unapplied_ms=age, now_ms=now)

    def stats(self) -> dict[str, Any]:
        return {"region": self.name, "strategy": self.strategy, "connected": self.connected,
                "applied": self.applied, "apply_seconds": round(self.apply_seconds, 6),
                "outbox": self.store.outbox_size(),
                "publish_errors": self.publish_errors, "transport_errors": self.transport_errors,
                "apply_errors": self.apply_errors, "last_error": self.last_error,
                "conflicts": len(self.store.conflicts())}

    def close(self) -> None:
        self.repository.close()


class Cluster:
    """Several regions replicating one set of tenant configs; see :func:`open_cluster`."""

    def __init__(self, names: Sequence[str], *, database_urls: dict[str, str],
                 client: redis.Redis,
                 namespace: str, strategy: Strategy, clock_ms: Callable[[], int],
                 lag_alert_ms: float | None, history_limit: int):
        self.names, self.database_urls, self.namespace = tuple(names), database_urls, namespace
        self.strategy, self.clock_ms, self.client = strategy, clock_ms, client
        self.lag_monitor = LagMonitor(alert_ms=lag_alert_ms)
        self.transport = StreamTransport(client, namespace, names)
        self.transport.ensure_groups()
        self._history_limit = history_limit
        self.regions: dict[str, Region] = {name: self._open(name) for name in self.names}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _open(self, name: str) -> Region:
        return Region(name, database_url=self.database_urls[name], transport=self.transport,
                      cache_client=self.client, cache_prefix=f"{self.namespace}:cache:",
                      strategy=self.strategy, clock_ms=self.clock_ms, lag=self.lag_monitor,
                      history_limit=self._history_limit)

    def _get(self, name: str) -> Region:
        if name not in self.regions:
            raise ConfigValidationError(FieldError(
                "region", f"unknown region {name!r}; this cluster has: {', '.join(self.names)}",
                "region"))
        return self.regions[name]

    def region(self, name: str) -> RegionRepository:
        """The repository of one region: read and write there as a local admin would."""
        return self._get(name).repository

    # ---- faults -------------------------------------------------------------------------
    def partition(self, name: str) -> None:
        """Cut a region off: it keeps serving and accepting writes, but sends and receives
        nothing; its writes wait in its outbox, others' changes wait in the streams."""
        self._get(name).connected = False

    def heal(self, name: str) -> None:
        """Reconnect a region; the next :meth:`sync` (or apply loop) catches it up."""
        self._get(name).connected = True

    @property
    def partitioned(self) -> list[str]:
        return [name for name, region in self.regions.items() if not region.connected]

    def restart(self, name: str) -> None:
        """Close a region and open it again from its file, as a process restart would.

        Its clock resumes from the stamps it stored; entries it was given but never
        acknowledged are read again first, and its outbox is sent.
        """
        region = self._get(name)
        connected = region.connected
        region.close()
        self.regions[name] = self._open(name)
        self.regions[name].connected = connected

    # ---- moving changes -----------------------------------------------------------------
    def sync(self, max_rounds: int = 10_000) -> int:
        """Deliver everything pending between connected regions, until quiet.

        Returns how many events were applied. Partitioned regions are left out.
        """
        applied = 0
        for _ in range(max_rounds):
            sent = sum(region.publish() for region in self.regions.values())
            received = sum(region.poll() for region in self.regions.values())
            applied += received
            if not sent and not received:
                break
        for origin in self.names:
            self.transport.trim(origin)
        return applied

    def start(self, *, block_ms: int = 20) -> None:
        """Run every region's apply loop in a background thread (as separate processes would)."""
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=region.run, args=(self._stop,),
                                          kwargs={"block_ms": block_ms},
                                          name=f"region-{name}", daemon=True)
                         for name, region in self.regions.items()]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the background apply loops (what is pending stays pending)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    # ---- observing ----------------------------------------------------------------------
    @property
    def lag_alert_ms(self) -> float | None:
        """Alert threshold: a pair alerts when its p95 lag or oldest unapplied change is older."""
        return self.lag_monitor.alert_ms

    @lag_alert_ms.setter
    def lag_alert_ms(self, value: float | None) -> None:
        self.lag_monitor.alert_ms = value

    def lag(self) -> dict[str, PairLag]:
        """Per ``"source->target"`` pair: p50/p95/p99/max commit-to-apply (ms), backlog,
        age of the oldest unapplied change (ms) and whether the alert fires.

        Unlike a region's own view, the backlog includes what the source committed but has
        not sent yet (it is cut off, or Redis was down).
        """
        return {f"{source}->{target}": self.regions[target].lag_from(
                    source, unsent=self.regions[source].unsent())
                for source in self.names for target in self.transport.peers(source)}

    def metrics_text(self) -> str:
        """Lag per pair in Prometheus' text format: what the API's ``/metrics`` appends."""
        from m11_tenant.regions.metrics import metrics_text

        return metrics_text(self)

    def lag_table(self) -> str:
        """The lag figures as a fixed-width text table, one line per pair (for notebooks)."""
        lines = [f"{'pair':9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'applied':>7} "
                 f"{'backlog':>7} {'oldest ms':>9}  alert"]
        for name, pair in self.lag().items():
            lines.append(f"{name:9} {pair.p50_ms:8.0f} {pair.p95_ms:8.0f} {pair.max_ms:8.0f} "
                         f"{pair.samples:7d} {pair.backlog:7d} {pair.oldest_unapplied_ms:9.0f}  "
                         f"{'ALERT' if pair.alert else '-'}")
        return "\n".join(lines)

    def view(self, tenant_id: str, *fields: str) -> dict[str, dict[str, Any]]:
        """What each region serves for a tenant right now: version, source and ``fields``."""
        out = {}
        for name in self.names:
            record = self.region(name).get_record(tenant_id)
            values = record.config.model_dump()
            out[name] = {"version": record.version, "source": record.source,
                         **{field: values[field] for field in fields}}
        return out

    def alerts(self) -> list[PairLag]:
        """The pairs whose lag is above :attr:`lag_alert_ms`."""
        return [pair for pair in self.lag().values() if pair.alert]

    def configs(self, name: str) -> dict[str, dict[str, Any]]:
        """Every stored config of one region, by tenant (read from its database)."""
        return {record.tenant_id: record.config
                for record in self._get(name).store.get_many()}

    def converged(self) -> bool:
        """True when every region stores exactly the same configs."""
        first, *rest = (self.configs(name) for name in self.names)
        return all(other == first for other in rest)

    def conflicts(self, name: str | None = None) -> list[Conflict]:
        """Conflicts one region detected (default: every region's, once each)."""
        names = [name] if name else list(self.names)
        seen: dict[str, Conflict] = {}
        for region_name in names:
            for conflict in self._get(region_name).store.conflicts():
                seen.setdefault(conflict.key, conflict)
        return list(seen.values())

    def stats(self) -> dict[str, Any]:
        """Per-region replication figures and per-pair lag, for dashboards and /metrics."""
        return {"strategy": self.strategy, "lag_alert_ms": self.lag_alert_ms,
                "regions": {name: region.stats() for name, region in self.regions.items()},
                "lag": {pair: lag.as_dict() for pair, lag in self.lag().items()}}

    def close(self) -> None:
        self.stop()
        for region in self.regions.values():
            region.close()


def open_cluster(regions: Sequence[str], strategy: str = "field-merge", *,
                 redis_url: str | None = None, base_dir: str | Path | None = None,
                 database_url: str | None = None, schema_prefix: str = "m11_region",
                 namespace: str = "m11:regions", redis_client: redis.Redis | None = None,
                 clock_ms: Callable[[], int] | None = None,
                 lag_alert_ms: float | None = 5_000.0, history_limit: int = 10) -> Cluster:
    """Open (or reopen) a set of regions that replicate tenant configs to each other.

    Args:
        regions: two or more region names (``["us", "eu", "ap"]``).
        strategy: ``"field-merge"`` (per-field last-write-wins) or ``"lww"`` (whole config).
        redis_url: the Redis carrying the change streams (and the regions' caches);
            ``None``: a private in-process fakeredis.
        base_dir: where each region keeps its SQLite file (``<region>.db``); default
            ``.m11/regions``. Reopening the same directory resumes where it stopped.
        database_url: ``postgresql://…`` to keep each region in a schema of its own,
            ``<schema_prefix>_<region>``, of that database (created if missing) instead
            of SQLite files.
        schema_prefix: see ``database_url``; give each cluster sharing a database its own.
        namespace: prefix of every Redis key; give each cluster sharing a Redis its own.
        redis_client: an existing client (wins over ``redis_url``), e.g. to reopen a cluster
            on the same fakeredis server.
        clock_ms: physical clock in milliseconds; inject a
            :class:`~m11_tenant.regions.clock.ManualClock` for reproducible output.
        lag_alert_ms: the lag alert threshold (``None``: no alerts); settable later.
        history_limit: versions kept per tenant in each region.

    Raises:
        ConfigValidationError: a region name, the strategy or the list is not valid.
    """
    names = check_regions(regions)
    chosen = check_strategy(strategy)
    if redis_client is None:
        if redis_url == "":
            raise ConfigValidationError(FieldError(
                "redis_url", "regions replicate over Redis Streams: give a redis:// URL, or "
                "None for an in-process fakeredis", "redis_url"))
        redis_client = (fakeredis.FakeRedis(server=fakeredis.FakeServer()) if redis_url is None
                        else stream_client(redis_url))
    if database_url:
        from m11_tenant.regions.postgres import region_urls

        urls = region_urls(database_url, schema_prefix, names)
    else:
        directory = Path(base_dir) if base_dir is not None else Path(".m11/regions")
        directory.mkdir(parents=True, exist_ok=True)
        urls = {name: f"sqlite:///{directory / f'{name}.db'}" for name in names}
    return Cluster(names, database_urls=urls, client=redis_client, namespace=namespace,
                   strategy=chosen, clock_ms=clock_ms or wall_clock_ms,
                   lag_alert_ms=lag_alert_ms, history_limit=history_limit)
