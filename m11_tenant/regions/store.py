"""A region's store: the SQLite store, plus replica state, outbox and conflict log.

The replication bookkeeping must commit or roll back with the config it describes, so it
is written from inside the store's own write transaction: the shared write algorithm
calls ``_put_current`` / ``_delete_current`` with the transaction open, and this subclass
adds its rows there. Nothing in the parent store changes.

- ``replica_state``: per tenant, the :class:`~m11_tenant.regions.merge.ReplicaState`
  (field registers with their clock stamps, tombstone, newest whole config).
- ``replica_outbox``: change events committed here and not yet on the stream. Publishing
  happens after commit; a crash in between leaves the event here to send on restart
  (a transactional outbox), so a committed write is never missing from replication.
- ``replica_conflicts``: conflicts detected here, once each.
- ``replica_clock``: the greatest stamp issued or seen, so the clock resumes after a restart.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from m11_tenant.regions.clock import HybridLogicalClock, Stamp
from m11_tenant.regions.merge import (
    WHOLE,
    ChangeEvent,
    Conflict,
    Register,
    ReplicaState,
    Strategy,
    apply_event,
    detect_conflicts,
    local_delete,
    local_write,
    resolve,
)
from m11_tenant.store import Change, ConfigRecord
from m11_tenant.store.sqlite import SQLiteStore


@dataclass(frozen=True)
class Applied:
    """What applying one remote event did here."""

    changed: bool  # the stored config changed (so caches must drop it)
    conflicts: list[Conflict] = field(default_factory=list)


class ReplicaStore(SQLiteStore):
    """One region's SQLite file: tenant configs and their replication bookkeeping."""

    def __init__(self, url: str, *, region: str, hlc: HybridLogicalClock,
                 clock_ms: Callable[[], int], history_limit: int = 10):
        super().__init__(url, history_limit=history_limit,
                         clock=lambda: datetime.fromtimestamp(clock_ms() / 1000, UTC))
        self.region, self.hlc, self.clock_ms = region, hlc, clock_ms
        # Set while a remote event is being stored: the state (and conflicts) to record
        # instead of stamping a new local change.
        self._remote = threading.local()
        with self._transaction():
            self.db["replica_state"].create({"tenant_id": str, "state": str}, pk="tenant_id",
                                            if_not_exists=True)
            self.db["replica_outbox"].create({"id": int, "tenant_id": str, "event": str},
                                             pk="id", if_not_exists=True)
            self.db["replica_conflicts"].create(
                {"key": str, "tenant_id": str, "field": str, "kind": str,
                 "detected_at_ms": int, "conflict": str}, pk="key", if_not_exists=True)
            self.db["replica_clock"].create({"node": str, "stamp": str}, pk="node",
                                            if_not_exists=True)
        rows = self._read("SELECT stamp FROM replica_clock WHERE node = ?", (region,))
        self.hlc.restore(Stamp.parse(rows[0]["stamp"]) if rows else None)

    # ---- hooks inside the parent's write transaction ------------------------------------
    def _put_current(self, record: ConfigRecord) -> None:
        super()._put_current(record)
        self._journal(record.tenant_id, record.config)

    def _delete_current(self, tenant_id: str) -> None:
        super()._delete_current(tenant_id)
        self._journal(tenant_id, None)

    def _journal(self, tenant_id: str, config: dict | None) -> None:
        remote = getattr(self._remote, "pending", None)
        if remote is not None:
            state, conflicts = remote
            self._save(tenant_id, state, conflicts)
            return
        state = self.state(tenant_id)
        stamp = self.hlc.now(self.clock_ms())
        committed_at = self.clock_ms()
        event = (local_delete(state, tenant_id, stamp, committed_at) if config is None
                 else local_write(state, tenant_id, config, stamp, committed_at))
        self._save(tenant_id, apply_event(state, event), [])
        self.db["replica_outbox"].insert({"tenant_id": tenant_id, "event": event.to_json()})

    def _save(self, tenant_id: str, state: ReplicaState, conflicts: list[Conflict]) -> None:
        self.db["replica_state"].upsert({"tenant_id": tenant_id, "state": state.to_json()},
                                        pk="tenant_id")
        if state.latest is not None:
            self.db.execute(
                "INSERT INTO replica_clock (node, stamp) VALUES (?, ?) ON CONFLICT (node) "
                "DO UPDATE SET stamp = max(stamp, excluded.stamp)",
                (self.region, str(Stamp(self.hlc.wall_ms, self.hlc.logical, self.region))))
        now = self.clock_ms()
        for conflict in conflicts:
            self.db.execute(
                "INSERT OR IGNORE INTO replica_conflicts (key, tenant_id, field, kind, "
                "detected_at_ms, conflict) VALUES (?, ?, ?, ?, ?, ?)",
                (conflict.key, conflict.tenant_id, conflict.field, conflict.kind, now,
                 json.dumps(conflict.as_dict(), sort_keys=True)))

    # ---- remote changes -----------------------------------------------------------------
    def apply_remote(self, event: ChangeEvent, strategy: Strategy) -> Applied:
        """Merge a change from another region and store what the state now resolves to.

        Idempotent: a duplicate leaves state and config as they are (no new version).
        """
        self.hlc.observe(event.stamp, self.clock_ms())
        tenant_id = event.tenant_id
        change = Change(f"replication:{event.origin}", "system", "replicate",
                        f"change {event.stamp} from region {event.origin}")
        with self._lock:
            state = self.state(tenant_id)
            conflicts = detect_conflicts(state, event, strategy)
            merged = apply_event(state, event)
            resolution = resolve(merged, strategy)
            if resolution.fell_back and merged.latest is not None:
                conflicts.append(Conflict(
                    tenant_id, WHOLE, merged.latest,
                    Register(event.stamp, resolution.refused, "field-merge"), "invalid-merge"))
            current = self._read_current(tenant_id)
            target = resolution.config
            self._remote.pending = (merged, conflicts)
            try:
                if target is None and current is not None:
                    self.delete(tenant_id, change)
                elif target is not None and (current is None or current.config != target):
                    self.write(tenant_id, lambda _current: target, change)
                else:
                    with self._transaction():
                        self._save(tenant_id, merged, conflicts)
                    return Applied(False, conflicts)
            finally:
                self._remote.pending = None
        return Applied(True, conflicts)

    # ---- reads of the bookkeeping -------------------------------------------------------
    def state(self, tenant_id: str) -> ReplicaState:
        rows = self._read("SELECT state FROM replica_state WHERE tenant_id = ?", (tenant_id,))
        return ReplicaState.from_json(rows[0]["state"] if rows else None)

    def replicated_tenants(self) -> list[str]:
        """Every tenant this region holds replica state for (deleted ones included)."""
        return [r["tenant_id"] for r in
                self._read("SELECT tenant_id FROM replica_state ORDER BY tenant_id")]

    def outbox(self, limit: int = 500) -> list[tuple[int, ChangeEvent]]:
        rows = self._read("SELECT id, event FROM replica_outbox ORDER BY id LIMIT ?", (limit,))
        return [(row["id"], ChangeEvent.from_json(row["event"])) for row in rows]

    def outbox_size(self) -> int:
        return int(self._read("SELECT count(*) AS n FROM replica_outbox")[0]["n"])

    def drop_from_outbox(self, ids: list[int]) -> None:
        if ids:
            with self._transaction():
                marks = ",".join("?" * len(ids))
                self.db.execute(f"DELETE FROM replica_outbox WHERE id IN ({marks})", tuple(ids))

    def conflicts(self, tenant_id: str | None = None) -> list[Conflict]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = self._read(f"SELECT conflict FROM replica_conflicts {where} ORDER BY rowid",
                          params)
        return [Conflict.from_dict(json.loads(row["conflict"])) for row in rows]
