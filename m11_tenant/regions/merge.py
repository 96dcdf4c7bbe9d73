"""Conflict resolution for replicated configs: pure functions on a per-tenant replica state.

Every region keeps, per tenant, a :class:`ReplicaState`: one register per config field
(the newest value written to it and the stamp of that write), the newest delete stamp
(the *tombstone*) and the newest whole config (``latest``). Applying a change event takes
the newer of each part, so the state is a join-semilattice: applying events in any order,
any number of times, gives the same state. Both strategies read their answer from that
same state, so a deployment can switch strategy without migrating anything:

- ``lww`` -- last-write-wins on the whole config: the config of the newest event.
- ``field-merge`` -- per-field last-write-wins: defaults, then every field register newer
  than the tombstone. Two regions changing different fields both keep their change. When
  the merged fields do not validate together (``top_k`` from one region, ``rerank_top_n``
  from another, say), the whole config of the newest event is used instead.

A delete is a tombstone, not an absence: it has a stamp, loses to later writes and wins
over earlier ones wherever it arrives. Fields are flattened as in ``config_diff``
(``branding.primary_color``); ``prompt_variables`` is one value, as in a merge update.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from m11_tenant.errors import ConfigValidationError, FieldError
from m11_tenant.regions.clock import Stamp
from m11_tenant.schema import TenantConfig, config_diff, validate_config

Strategy = Literal["lww", "field-merge"]
STRATEGIES: tuple[str, ...] = ("lww", "field-merge")
EXISTS = "@"  # the register every write stamps: "a config exists", so deletes can lose to it
WHOLE = "*"  # the name conflicts on the whole config (and deletes) are logged under

_DEFAULTS = TenantConfig().model_dump()


def check_strategy(strategy: str) -> Strategy:
    """Return ``strategy`` if it is one of :data:`STRATEGIES`, else raise a clear error."""
    if strategy not in STRATEGIES:
        raise ConfigValidationError(FieldError(
            "strategy", f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}",
            "strategy"))
    return strategy  # type: ignore[return-value]


@dataclass(frozen=True)
class Register:
    """A value with the stamp of the write that set it and the region that wrote it."""

    stamp: Stamp
    value: Any
    origin: str


@dataclass(frozen=True)
class ChangeEvent:
    """One committed write, as it travels between regions.

    ``config`` is the whole config after the write (``None`` for a delete); ``fields`` the
    flattened fields it changed (plus :data:`EXISTS` for a write); ``seen`` the stamps its
    author held for those fields (and for the whole config under :data:`WHOLE`) when it
    wrote -- what lets a receiver tell a concurrent write from one its author overrode
    knowingly. ``committed_at_ms`` is the author's physical time at commit, for lag.
    """

    tenant_id: str
    origin: str
    stamp: Stamp
    config: dict[str, Any] | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    seen: Mapping[str, Stamp | None] = field(default_factory=dict)
    committed_at_ms: int = 0

    @property
    def is_delete(self) -> bool:
        return self.config is None

    @property
    def event_id(self) -> str:
        return str(self.stamp)

    def to_json(self) -> str:
        return json.dumps({
            "tenant_id": self.tenant_id, "origin": self.origin, "stamp": str(self.stamp),
            "config": self.config, "fields": dict(self.fields),
            "seen": {k: None if v is None else str(v) for k, v in self.seen.items()},
            "committed_at_ms": self.committed_at_ms,
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ChangeEvent:
        doc = json.loads(text)
        return cls(doc["tenant_id"], doc["origin"], Stamp.parse(doc["stamp"]), doc["config"],
                   doc["fields"],
                   {k: None if v is None else Stamp.parse(v) for k, v in doc["seen"].items()},
                   int(doc["committed_at_ms"]))


@dataclass(frozen=True)
class ReplicaState:
    """What one region knows about one tenant's writes, from every region."""

    fields: Mapping[str, Register] = field(default_factory=dict)
    tombstone: Stamp | None = None
    latest: Register | None = None

    def to_json(self) -> str:
        return json.dumps({
            "fields": {k: [str(r.stamp), r.value, r.origin] for k, r in self.fields.items()},
            "tombstone": None if self.tombstone is None else str(self.tombstone),
            "latest": None if self.latest is None else [
                str(self.latest.stamp), self.latest.value, self.latest.origin],
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ReplicaState:
        if not text:
            return cls()
        doc = json.loads(text)
        latest = doc["latest"]
        return cls(
            {k: Register(Stamp.parse(s), v, o) for k, (s, v, o) in doc["fields"].items()},
            None if doc["tombstone"] is None else Stamp.parse(doc["tombstone"]),
            None if latest is None else Register(Stamp.parse(latest[0]), latest[1], latest[2]),
        )

    @property
    def newest_stamp(self) -> Stamp | None:
        return None if self.latest is None else self.latest.stamp


@dataclass(frozen=True)
class Conflict:
    """Two writes to the same field (or config) that did not see each other; one won.

    ``kind`` is ``concurrent`` (per-field or whole-config last-write-wins picked the
    winner) or ``invalid-merge`` (the field-merged config did not validate, so the newest
    whole config was used; ``loser`` then holds the merged fields that were refused).
    """

    tenant_id: str
    field: str
    winner: Register
    loser: Register
    kind: str = "concurrent"

    @property
    def key(self) -> str:
        """The same conflict gets the same key in every region that detects it."""
        return f"{self.tenant_id}|{self.field}|{self.winner.stamp}|{self.loser.stamp}|{self.kind}"

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "field": self.field, "kind": self.kind,
                "winner": {"region": self.winner.origin, "value": self.winner.value,
                           "stamp": str(self.winner.stamp)},
                "loser": {"region": self.loser.origin, "value": self.loser.value,
                          "stamp": str(self.loser.stamp)}}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Conflict:
        def register(side: Mapping[str, Any]) -> Register:
            return Register(Stamp.parse(side["stamp"]), side["value"], side["region"])

        return cls(doc["tenant_id"], doc["field"], register(doc["winner"]),
                   register(doc["loser"]), doc["kind"])


# ---------------------------------------------------------------------------- local writes


def _live(state: ReplicaState) -> dict[str, Register]:
    return {name: reg for name, reg in state.fields.items()
            if state.tombstone is None or reg.stamp > state.tombstone}


def overlay(state: ReplicaState) -> dict[str, Any]:
    """The defaults with every live field register on top (not validated)."""
    merged = copy.deepcopy(_DEFAULTS)
    for name, reg in _live(state).items():
        if name == EXISTS:
            continue
        if name.startswith("branding."):
            merged["branding"][name.removeprefix("branding.")] = copy.deepcopy(reg.value)
        else:
            merged[name] = copy.deepcopy(reg.value)
    return merged


def local_write(state: ReplicaState, tenant_id: str, config: Mapping[str, Any], stamp: Stamp,
                committed_at_ms: int) -> ChangeEvent:
    """The event for a write committed in this region that left ``config`` stored.

    Only the fields that differ from what the state already implies are stamped, so a
    write never claims fields it did not change (and cannot override another region's
    concurrent change to them).
    """
    changed = {name: new for name, (_old, new) in config_diff(overlay(state), config).items()}
    changed[EXISTS] = True
    seen = {name: state.fields[name].stamp if name in state.fields else None
            for name in changed}
    seen[WHOLE] = state.newest_stamp
    return ChangeEvent(tenant_id, stamp.node, stamp, dict(config), changed, seen,
                       committed_at_ms)


def local_delete(state: ReplicaState, tenant_id: str, stamp: Stamp,
                 committed_at_ms: int) -> ChangeEvent:
    """The event for a delete committed in this region."""
    return ChangeEvent(tenant_id, stamp.node, stamp, None, {}, {WHOLE: state.newest_stamp},
                       committed_at_ms)


# ---------------------------------------------------------------------------- merging


def apply_event(state: ReplicaState, event: ChangeEvent) -> ReplicaState:
    """Join an event into a state: the newer register wins, field by field.

    Idempotent (applying twice changes nothing), commutative and associative (any order of
    any set of events gives one state) -- the property every region's convergence rests on.
    """
    fields = dict(state.fields)
    for name, value in event.fields.items():
        current = fields.get(name)
        if current is None or event.stamp > current.stamp:
            fields[name] = Register(event.stamp, value, event.origin)
    tombstone = state.tombstone
    if event.is_delete and (tombstone is None or event.stamp > tombstone):
        tombstone = event.stamp
    latest = state.latest
    if latest is None or event.stamp > latest.stamp:
        latest = Register(event.stamp, event.config, event.origin)
    return ReplicaState(fields, tombstone, latest)


@dataclass(frozen=True)
class Resolution:
    """The config a state resolves to (``None``: nothing stored) and whether it fell back."""

    config: dict[str, Any] | None
    fell_back: bool = False
    refused: dict[str, Any] | None = None  # the merged config that did not validate


def resolve(state: ReplicaState, strategy: Strategy) -> Resolution:
    """The config every region holding ``state`` stores, under ``strategy``."""
    if strategy == "lww":
        return Resolution(None if state.latest is None else state.latest.value)
    exists = _live(state).get(EXISTS)
    if exists is None:
        return Resolution(None)
    merged = overlay(state)
    if state.latest is not None and state.latest.value == merged:
        return Resolution(merged)  # no concurrent change: the newest write, validated at home
    try:
        return Resolution(validate_config(merged).model_dump())
    except ConfigValidationError:
        assert state.latest is not None  # a live write exists, so the newest event is a write
        return Resolution(state.latest.value, True, merged)


def detect_conflicts(state: ReplicaState, event: ChangeEvent,
                     strategy: Strategy) -> list[Conflict]:
    """Writes in ``state`` that ``event``'s author had not seen and that it disagrees with.

    A register newer than the stamp the author held for it cannot have been seen by the
    author, so the two writes were concurrent; the newer stamp wins, the other is logged.
    """
    conflicts: list[Conflict] = []
    incoming = Register(event.stamp, event.config, event.origin)

    def unseen(reg: Register | None, seen: Stamp | None) -> bool:
        return reg is not None and reg.stamp != event.stamp and (seen is None or reg.stamp > seen)

    def log(name: str, existing: Register, new: Register) -> None:
        if existing.value != new.value:
            winner, loser = (existing, new) if existing.stamp > new.stamp else (new, existing)
            conflicts.append(Conflict(event.tenant_id, name, winner, loser))

    seen_whole = event.seen.get(WHOLE)
    if strategy == "lww" or event.is_delete:
        if unseen(state.latest, seen_whole):
            assert state.latest is not None
            log(WHOLE, state.latest, incoming)
        return conflicts
    if state.tombstone is not None:
        deleted = Register(state.tombstone, None, state.tombstone.node)
        if unseen(deleted, seen_whole):
            log(WHOLE, deleted, incoming)
    for name, value in sorted(event.fields.items()):
        if name == EXISTS:
            continue
        existing = state.fields.get(name)
        if unseen(existing, event.seen.get(name)):
            assert existing is not None
            log(name, existing, Register(event.stamp, value, event.origin))
    return conflicts

