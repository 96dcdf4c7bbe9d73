"""Multi-region replication of tenant configs, with conflict resolution and lag monitoring.

>>> import tempfile
>>> from m11_tenant.regions import open_cluster
>>> cluster = open_cluster(["us", "eu", "ap"], base_dir=tempfile.mkdtemp())
>>> _ = cluster.region("us").update_config("acme", {"temperature": 0.2})
>>> cluster.sync()
2
>>> cluster.region("ap").get_config("acme").temperature
0.2

Pieces: :mod:`.clock` (hybrid logical clocks), :mod:`.merge` (the pure conflict
resolution), :mod:`.transport` (Redis Streams), :mod:`.store` (a region's store -- a SQLite
file via :mod:`.sqlite`, or a PostgreSQL schema via :mod:`.postgres` -- with the replica
state and outbox of :mod:`.journal`),
:mod:`.lag` (lag figures), :mod:`.metrics` (the Prometheus collectors), :mod:`.cluster`
(the surface), :mod:`.service` (one region as a process: ``serve --region``), and
:mod:`.loopback` (a private redis-server and region processes on loopback, for the crash
tests and the benchmark).
"""

from __future__ import annotations

from m11_tenant.regions.clock import HybridLogicalClock, ManualClock, Stamp
from m11_tenant.regions.cluster import Cluster, Region, RegionRepository, open_cluster
from m11_tenant.regions.lag import LagMonitor, PairLag
from m11_tenant.regions.merge import (
    STRATEGIES,
    ChangeEvent,
    Conflict,
    ReplicaState,
    apply_event,
    resolve,
)

__all__ = [
    "STRATEGIES",
    "ChangeEvent",
    "Cluster",
    "Conflict",
    "HybridLogicalClock",
    "LagMonitor",
    "ManualClock",
    "PairLag",
    "Region",
    "RegionRepository",
    "ReplicaState",
    "Stamp",
    "apply_event",
    "open_cluster",
    "resolve",
]
