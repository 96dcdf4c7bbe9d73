"""A region's replication bookkeeping, mixed into a tenant store: replica state, outbox
and conflict log (the backends: :mod:`.sqlite`, :mod:`.postgres`; opened by :mod:`.store`).

The replication bookkeeping must commit or roll back with the config it describes, so it
is written from inside the store's own write transaction: the shared write algorithm of
:class:`~m11_tenant.store.base.TransactionalStore` calls ``_put_current`` /
``_delete_current`` with the transaction open, and :class:`ReplicaJournal` adds its rows
there. Nothing in the parent stores changes; a backend only says how to run one statement.

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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True)
class RemotePlan:
    """What a change from another region does here: ``write`` ``target``, ``delete``, or
    ``keep`` the stored config; and the replica state and conflicts to record with it."""

    tenant_id: str
    state: ReplicaState
    conflicts: list[Conflict] = field(default_factory=list)
    action: str = "keep"
    target: dict[str, Any] | None = None


def datetime_clock(clock_ms: Callable[[], int]) -> Callable[[], datetime]:
    """The store's ``updated_at`` clock, following the region's millisecond clock."""
    return lambda: datetime.fromtimestamp(clock_ms() / 1000, UTC)


class ReplicaJournal(ABC):
    """Replication bookkeeping for a ``TransactionalStore`` subclass (mix in first).

    A backend supplies ``_replica_rows`` (run one statement written with ``?``
    placeholders, return its rows as tuples) and ``AUTO_ID`` (the DDL of an
    auto-numbered primary key); opening it opens the store it is mixed into, with a
    clock that follows the region's, then the bookkeeping tables.
    """

    AUTO_ID = "INTEGER PRIMARY KEY"
    after_commit: Callable[[], None] | None = None
    region: str
    hlc: HybridLogicalClock
    clock_ms: Callable[[], int]

    def __init__(self, url: str, *, region: str, hlc: HybridLogicalClock,
                 clock_ms: Callable[[], int], history_limit: int = 10):
        super().__init__(url, history_limit=history_limit,  # type: ignore[call-arg]
                         clock=datetime_clock(clock_ms))
        self._open_journal(region, hlc, clock_ms)

    @abstractmethod
    def _replica_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and return its rows as tuples."""

    def _open_journal(self, region: str, hlc: HybridLogicalClock,
                      clock_ms: Callable[[], int]) -> None:
        self.region, self.hlc, self.clock_ms = region, hlc, clock_ms
        # Set while a remote event is being stored: the state (and conflicts) to record
        # instead of stamping a new local change.
        self._remote = threading.local()
        with self._transaction():  # type: ignore[attr-defined]
            for ddl in (
                "CREATE TABLE IF NOT EXISTS replica_state "
                "(tenant_id TEXT PRIMARY KEY, state TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS replica_outbox (id {self.AUTO_ID}, "
                "tenant_id TEXT NOT NULL, event TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS replica_conflicts (id {self.AUTO_ID}, "
                "key TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL, field TEXT NOT NULL, "
                "kind TEXT NOT NULL, detected_at_ms BIGINT NOT NULL, conflict TEXT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS replica_clock "
                "(node TEXT PRIMARY KEY, stamp TEXT NOT NULL)",
            ):
                self._replica_rows(ddl)
        rows = self._replica_rows("SELECT stamp FROM replica_clock WHERE node = ?", (region,))
        self.hlc.restore(Stamp.parse(rows[0][0]) if rows else None)

    # ---- hooks inside the parent's write transaction ------------------------------------
    def _put_current(self, record: ConfigRecord) -> None:
        super()._put_current(record)  # type: ignore[misc]
        self._journal(record.tenant_id, record.config)

    def _delete_current(self, tenant_id: str) -> None:
        super()._delete_current(tenant_id)  # type: ignore[misc]
        self._journal(tenant_id, None)

    def _journal(self, tenant_id: str, config: dict[str, Any] | None) -> None:
        remote = getattr(self._remote, "pending", None)
        if remote is not None:
            state, conflicts = remote
            self._save(tenant_id, state, conflicts)
            return
        state = self.state(tenant_id)
        now = self.clock_ms()
        stamp = self.hlc.now(now)
        event = (local_delete(state, tenant_id, stamp, now) if config is None
                 else local_write(state, tenant_id, config, stamp, now))
        self._save(tenant_id, apply_event(state, event), [])
        self._replica_rows("INSERT INTO replica_outbox (tenant_id, event) VALUES (?, ?)",
                           (tenant_id, event.to_json()))

    def _save(self, tenant_id: str, state: ReplicaState, conflicts: list[Conflict]) -> None:
        self._replica_rows(
            "INSERT INTO replica_state (tenant_id, state) VALUES (?, ?) ON CONFLICT (tenant_id) "
            "DO UPDATE SET state = excluded.state", (tenant_id, state.to_json()))
        self._replica_rows(
            "INSERT INTO replica_clock (node, stamp) VALUES (?, ?) ON CONFLICT (node) DO UPDATE "
            "SET stamp = CASE WHEN excluded.stamp > replica_clock.stamp THEN excluded.stamp "
            "ELSE replica_clock.stamp END",
            (self.region, str(Stamp(self.hlc.wall_ms, self.hlc.logical, self.region))))
        now = self.clock_ms()
        for conflict in conflicts:
            self._replica_rows(
                "INSERT INTO replica_conflicts (key, tenant_id, field, kind, detected_at_ms, "
                "conflict) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (conflict.key, conflict.tenant_id, conflict.field, conflict.kind, now,
                 json.dumps(conflict.as_dict(), sort_keys=True)))

    # ---- after commit -------------------------------------------------------------------
    def write(self, tenant_id: str, build: Any, change: Change) -> ConfigRecord:
        record = super().write(tenant_id, build, change)  # type: ignore[misc]
        self._committed()
        return record

    def write_many(self, builds: Any, change: Change, when_locked: Any = None
                   ) -> tuple[list[ConfigRecord], list[str]]:
        result = super().write_many(builds, change, when_locked)  # type: ignore[misc]
        self._committed()
        return result  # type: ignore[no-any-return]

    def delete(self, tenant_id: str, change: Change) -> ConfigRecord:
        record = super().delete(tenant_id, change)  # type: ignore[misc]
        self._committed()
        return record

    def _committed(self) -> None:
        """A local change is committed (and in the outbox): hand it to the region to send."""
        if getattr(self._remote, "pending", None) is None and self.after_commit is not None:
            self.after_commit()

    # ---- remote changes -----------------------------------------------------------------
    def exclusive(self) -> AbstractContextManager[Any]:
        """Hold off every other writer of this store (re-entrant) while a change is applied."""
        return self._lock  # type: ignore[attr-defined,no-any-return]

    def plan_remote(self, events: Sequence[ChangeEvent], strategy: Strategy) -> RemotePlan:
        """What applying changes from other regions to one tenant does here (call under
        ``exclusive``). Several changes are folded first -- the merge is a join, so the
        result is the same as one by one -- and cost one write.

        Idempotent: for duplicates the plan is ``keep`` with the state unchanged.
        """
        tenant_id = events[0].tenant_id
        state = self.state(tenant_id)
        conflicts: list[Conflict] = []
        for event in events:
            self.hlc.observe(event.stamp, self.clock_ms())
            conflicts += detect_conflicts(state, event, strategy)
            state = apply_event(state, event)
        resolution = resolve(state, strategy)
        if resolution.fell_back and state.latest is not None:
            conflicts.append(Conflict(
                tenant_id, WHOLE, state.latest,
                Register(max(e.stamp for e in events), resolution.refused, "field-merge"),
                "invalid-merge"))
        current = self.get(tenant_id)  # type: ignore[attr-defined]
        target = resolution.config
        if target is None and current is not None:
            action = "delete"
        elif target is not None and (current is None or current.config != target):
            action = "write"
        else:
            action = "keep"
        return RemotePlan(tenant_id, state, conflicts, action, target)

    @contextmanager
    def recording(self, plan: RemotePlan) -> Iterator[None]:
        """Writes inside this block record ``plan``'s state instead of a new local change."""
        self._remote.pending = (plan.state, plan.conflicts)
        try:
            yield
        finally:
            self._remote.pending = None

    def keep(self, plan: RemotePlan) -> None:
        """Record a plan that leaves the config as it is (state and conflicts only)."""
        with self._transaction():  # type: ignore[attr-defined]
            self._save(plan.tenant_id, plan.state, plan.conflicts)

    # ---- reads of the bookkeeping -------------------------------------------------------
    def state(self, tenant_id: str) -> ReplicaState:
        rows = self._replica_rows("SELECT state FROM replica_state WHERE tenant_id = ?",
                                  (tenant_id,))
        return ReplicaState.from_json(rows[0][0] if rows else None)

    def outbox(self, limit: int = 500) -> list[tuple[int, ChangeEvent]]:
        rows = self._replica_rows("SELECT id, event FROM replica_outbox ORDER BY id LIMIT ?",
                                  (limit,))
        return [(int(row_id), ChangeEvent.from_json(event)) for row_id, event in rows]

    def outbox_size(self) -> int:
        return int(self._replica_rows("SELECT count(*) FROM replica_outbox")[0][0])

    def drop_from_outbox(self, ids: list[int]) -> None:
        if ids:
            with self._transaction():  # type: ignore[attr-defined]
                marks = ",".join("?" * len(ids))
                self._replica_rows(f"DELETE FROM replica_outbox WHERE id IN ({marks})",
                                   tuple(ids))

    def conflicts(self, tenant_id: str | None = None) -> list[Conflict]:
        where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
        rows = self._replica_rows(f"SELECT conflict FROM replica_conflicts {where} ORDER BY id",
                                  params)
        return [Conflict.from_dict(json.loads(row[0])) for row in rows]
