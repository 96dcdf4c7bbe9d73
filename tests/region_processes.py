"""The crash drill the process-level region tests run: three `serve --region` processes, a
burst of writes through all three, one region SIGKILLed mid-burst and restarted, the
streams' Redis SIGKILLed and restarted once; then convergence and the checks.

Each region writes one field of its own (us: max_tokens, eu and ap: a branding color) with
values that map one-to-one to the writer's sequence number, so every stored value says
which write it came from: a final value older than the last acknowledged write means a
lost write, and a region's history going back to an older value means an event applied
again after a newer one (a double apply that changed the result).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx

from m11_tenant.regions.loopback import LoopbackRegions

REGIONS = ["us", "eu", "ap"]
VICTIM = "eu"  # the region killed mid-burst


@dataclass(frozen=True)
class DrillField:
    """The field one region's writer owns: write ``i`` stores ``make(i)``; ``index`` maps
    a stored value back to ``i`` (-1 for the default)."""

    path: tuple[str, ...]
    default: Any
    make: Callable[[int], Any]
    index: Callable[[Any], int]
    limit: int  # writes the field's range allows

    def change(self, i: int) -> dict[str, Any]:
        value: Any = self.make(i)
        for key in reversed(self.path):
            value = {key: value}
        return value

    def read(self, config: dict[str, Any]) -> Any:
        value: Any = config
        for key in self.path:
            value = value.get(key, self.default) if isinstance(value, dict) else self.default
        return value

    def index_of(self, value: Any) -> int:
        if value == self.default:
            return -1
        found = self.index(value)
        assert 0 <= found < self.limit and self.make(found) == value, (
            f"{'.'.join(self.path)} holds {value!r}, which no write produced")
        return found


def _color(i: int) -> str:
    return f"#{i + 1:06X}"


FIELDS = {
    "us": DrillField(("max_tokens",), 500, lambda i: 501 + i, lambda v: v - 501, 499),
    "eu": DrillField(("branding", "secondary_color"), "#F6F8FA", _color,
                     lambda v: int(v[1:], 16) - 1, 100_000),
    "ap": DrillField(("branding", "primary_color"), "#1F6FEB", _color,
                     lambda v: int(v[1:], 16) - 1, 100_000),
}
ALERT = re.compile(r'^m11_replication_lag_alert\{source="(\w+)",target="(\w+)"\} (\S+)$', re.M)
BACKLOG = re.compile(r'^m11_replication_backlog\{source="(\w+)",target="(\w+)"\} (\S+)$', re.M)


@dataclass
class Journal:
    """What one writer sent: per tenant, (sequence number, ``ok`` | ``unknown``)."""

    outcomes: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    refused: int = 0  # connection refused: never reached the server; retried

    def add(self, tenant: str, index: int, outcome: str) -> None:
        self.outcomes.setdefault(tenant, []).append((index, outcome))

    @property
    def acknowledged(self) -> int:
        return sum(o == "ok" for entries in self.outcomes.values() for _, o in entries)


@dataclass
class DrillReport:
    acknowledged: int
    acked_before_kill: int
    acked_after_redis_restart: int
    unknown: int
    lost: int
    refused_retried: int
    converged_after_burst_s: float
    converged_after_restart_s: float
    victim_down_s: float
    finals: dict[str, dict[str, dict[str, Any]]]


def writer(regions: LoopbackRegions, region: str, tenants: list[str], journal: Journal,
           stop: threading.Event) -> None:
    """Writes ``region``'s field for its tenants in turn, plus one fresh tenant per round,
    until stopped or out of values.

    The shared tenants show merging and ordering (only the newest value must survive);
    the fresh tenants make every write count -- a lost one is a tenant missing somewhere.
    A refused connection never reached the server: retried. Any other failure (the server
    died mid-request, a timeout) is ``unknown``: the write may or may not have committed,
    and the writer goes on with the next value.
    """
    server, owned = regions[region], FIELDS[region]
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        for index in range(owned.limit):
            for tenant in [*tenants, fresh_tenant(region, index)]:
                while not stop.is_set():
                    try:
                        reply = client.post(f"/config/{tenant}",
                                            json={"config": owned.change(index)})
                    except httpx.ConnectError:
                        journal.refused += 1
                        time.sleep(0.05)
                        continue
                    except httpx.HTTPError:
                        journal.add(tenant, index, "unknown")
                    else:
                        assert reply.status_code == 200, (reply.status_code, reply.text)
                        journal.add(tenant, index, "ok")
                    break
                if stop.is_set():
                    return


def _wait_for_writes(journals: dict[str, Journal], minimum: dict[str, int],
                     timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while any(journals[region].acknowledged < count for region, count in minimum.items()):
        assert time.monotonic() < deadline, f"the writers stalled: {minimum}"
        time.sleep(0.02)


def fresh_tenant(region: str, index: int) -> str:
    return f"fresh-{region}-{index}"


def tenant_lists(regions: LoopbackRegions) -> dict[str, list[str]]:
    out = {}
    for name, server in regions.regions.items():
        reply = httpx.get(f"{server.url}/tenants", params={"limit": 1000},
                          headers=server.headers, timeout=10)
        out[name] = sorted(reply.json()["tenants"])
    return out


def served(regions: LoopbackRegions, tenants: list[str]) -> dict[str, dict[str, Any]]:
    """Every region's served config per tenant (reads are local)."""
    out = {}
    for name, server in regions.regions.items():
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
            out[name] = {t: client.get(f"/config/{t}").json()["config"] for t in tenants}
    return out


def run_drill(regions: LoopbackRegions, owners: dict[str, list[str]],
              per_phase: int = 5) -> DrillReport:
    """The drill on a started deployment; ``owners``: the shared tenants each region writes.

    Every writer gets ``per_phase`` writes acknowledged before the kill and again after
    the Redis restart (counted, not timed: a loaded machine only makes the drill longer).
    """
    journals = {region: Journal() for region in REGIONS}
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(regions, r, owners[r], journals[r], stop))
               for r in REGIONS]
    for thread in threads:
        thread.start()
    try:
        _wait_for_writes(journals, {region: per_phase for region in REGIONS})
        killed_at = time.monotonic()
        acked_before_kill = sum(j.acknowledged for j in journals.values())
        regions[VICTIM].kill()  # mid-burst, requests in flight
        time.sleep(0.3)
        regions[VICTIM].start()
        restarted_at = time.monotonic()
        time.sleep(0.3)
        regions.redis.kill()  # the streams' Redis dies; writes go on into the outboxes
        time.sleep(0.5)
        regions.redis.start()
        acked_at_redis_restart = sum(j.acknowledged for j in journals.values())
        _wait_for_writes(journals, {region: journals[region].acknowledged + per_phase
                                    for region in REGIONS})
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    burst_done = time.monotonic()
    shared = sorted({t for ts in owners.values() for t in ts})
    deadline = burst_done + 60
    while True:  # converged: the same tenants everywhere, the same shared configs
        lists = tenant_lists(regions)
        if all(lists[name] == lists[REGIONS[0]] for name in REGIONS):
            finals = served(regions, shared)
            if all(finals[name] == finals[REGIONS[0]] for name in REGIONS):
                converged = time.monotonic()
                break
        assert time.monotonic() < deadline, f"no convergence within 60 s: {lists}"
        time.sleep(0.1)
    fresh = [t for t in lists[REGIONS[0]] if t.startswith("fresh-")]
    finals = served(regions, shared + fresh)
    assert all(finals[name] == finals[REGIONS[0]] for name in REGIONS)
    lost = sum(_check_final(region, tenant, finals[REGIONS[0]].get(tenant), journals[region])
               for region in REGIONS
               for tenant in {*owners[region], *journals[region].outcomes})
    for name in REGIONS:
        for tenant in shared:
            _check_history(regions, name, tenant)
    acknowledged = sum(j.acknowledged for j in journals.values())
    return DrillReport(
        acknowledged=acknowledged, acked_before_kill=acked_before_kill,
        acked_after_redis_restart=acknowledged - acked_at_redis_restart,
        unknown=sum(o == "unknown" for j in journals.values() for es in j.outcomes.values()
                    for _, o in es),
        lost=lost, refused_retried=sum(j.refused for j in journals.values()),
        converged_after_burst_s=converged - burst_done,
        converged_after_restart_s=converged - restarted_at,
        victim_down_s=restarted_at - killed_at, finals=finals)


def _check_final(region: str, tenant: str, config: dict[str, Any] | None,
                 journal: Journal) -> int:
    """How many acknowledged writes of ``region``'s field of ``tenant`` the final state
    lost (0 or 1: only the newest must survive; a fresh tenant has one write).

    Allowed: the last acknowledged write's value, or a later write whose reply never came
    (it may have committed). Under both strategies, with one writer per field (and, for
    lww, one per tenant), nothing else may win.
    """
    entries = journal.outcomes.get(tenant, [])
    acked = [i for i, outcome in entries if outcome == "ok"]
    if not acked:
        return 0
    if config is None:  # an acknowledged fresh tenant missing from the regions
        return 1
    final = FIELDS[region].index_of(FIELDS[region].read(config))
    maybe = {i for i, outcome in entries if outcome == "unknown" and i > acked[-1]}
    return 0 if final == acked[-1] or final in maybe else 1


def _check_history(regions: LoopbackRegions, name: str, tenant: str) -> None:
    """No field of the tenant ever went back to an older write in region ``name``."""
    server = regions[name]
    reply = httpx.get(f"{server.url}/config/{tenant}/history", headers=server.headers,
                      timeout=10)
    versions = list(reversed(reply.json()["versions"]))
    for owned in FIELDS.values():
        seen = [owned.index_of(owned.read(version["config"])) for version in versions]
        assert seen == sorted(seen), (
            f"{name}: {tenant}.{'.'.join(owned.path)} went back to an older write: {seen}")


def lag_settled(regions: LoopbackRegions, timeout: float = 30.0) -> dict[str, Any]:
    """Every region's lag alerts and backlogs from its /metrics, and its admin health, once
    no backlog or alert is left (or at ``timeout``: the caller's asserts then say what is
    stuck).

    Converged configs can precede an empty backlog (a duplicate re-sent from an outbox
    after the Redis restart is still being read and dropped) and a cleared alert (the
    catch-up's lags stay in the alert's time window for a while).
    """
    deadline = time.monotonic() + timeout
    while True:
        out: dict[str, Any] = {}
        for name, server in regions.regions.items():
            text = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
            health = httpx.get(f"{server.url}/health/detail", headers=server.headers,
                               timeout=10).json()
            out[name] = {
                "alerts": {f"{s}->{t}": float(v) for s, t, v in ALERT.findall(text)},
                "backlog": {f"{s}->{t}": float(v) for s, t, v in BACKLOG.findall(text)},
                "health": health}
        if time.monotonic() > deadline or not any(
                any(state["backlog"].values()) or any(state["alerts"].values())
                for state in out.values()):
            return out
        time.sleep(0.2)


def owners_for(strategy: str, tenants: int = 6) -> dict[str, list[str]]:
    """field-merge: every region writes every tenant (its own field, concurrently);
    lww: each tenant is written by one region (lww keeps whole configs, so concurrent
    writers of one tenant lose fields by design -- tested in process, not here)."""
    names = [f"drill-{n}" for n in range(tenants)]
    if strategy == "field-merge":
        return {region: names for region in REGIONS}
    turn = count()
    owned: dict[str, list[str]] = {region: [] for region in REGIONS}
    for tenant in names:
        owned[REGIONS[next(turn) % len(REGIONS)]].append(tenant)
    return owned
