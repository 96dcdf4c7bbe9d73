"""Change events between regions on Redis Streams (fakeredis by default, real Redis by URL).

Layout: one stream per origin region (``<namespace>:changes:<origin>``); on each stream,
one consumer group per *other* region, named after it. A reading region asks its group on
every peer stream for new entries, applies them, then acknowledges them (XACK). An entry
read but not acknowledged -- the reader crashed mid-apply -- stays in the group's pending
list and is read again, first thing, when the region restarts. Entries every group has
acknowledged are trimmed, so a stream holds only what some region still needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from m11_tenant.errors import ServiceUnavailableError
from m11_tenant.regions.merge import ChangeEvent

FIELD = "event"


@dataclass(frozen=True)
class Delivery:
    """One event read from a peer's stream, with the id to acknowledge it by."""

    origin: str
    message_id: str
    event: ChangeEvent


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _next_id(message_id: str) -> str:
    ms, seq = message_id.split("-")
    return f"{ms}-{int(seq) + 1}"


class StreamTransport:
    """Publish, read, acknowledge and measure change events for a set of regions."""

    def __init__(self, client: redis.Redis, namespace: str, regions: Sequence[str]):
        self.client, self.namespace, self.regions = client, namespace, tuple(regions)

    def stream(self, origin: str) -> str:
        return f"{self.namespace}:changes:{origin}"

    def peers(self, region: str) -> list[str]:
        return [other for other in self.regions if other != region]

    def ensure_groups(self) -> None:
        """Create every (stream, group) pair that is missing; existing ones keep their place.

        Groups start at id 0, so a group created after some events were published still
        receives them all.
        """
        for origin in self.regions:
            for target in self.peers(origin):
                try:
                    self._call("xgroup_create", self.stream(origin), target, id="0",
                               mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

    def publish(self, event: ChangeEvent) -> str:
        """Append one event to its origin's stream; returns the stream entry id."""
        return _text(self._call("xadd", self.stream(event.origin), {FIELD: event.to_json()}))

    def read(self, target: str, *, count: int = 100, pending: bool = False,
             block_ms: int | None = None) -> list[Delivery]:
        """Entries of every peer stream for ``target``'s group.

        ``pending=True`` re-reads what this region was given before but never acknowledged
        (after a restart); otherwise only entries never delivered to the group.
        """
        streams = {self.stream(origin): "0" if pending else ">" for origin in self.peers(target)}
        reply = self._call("xreadgroup", target, target, streams, count=count, block=block_ms)
        deliveries = []
        for stream_name, entries in reply or []:
            origin = _text(stream_name).rsplit(":", 1)[1]
            for message_id, fields in entries:
                if not fields:  # pending entry trimmed away: nothing left to apply
                    self.ack(target, origin, _text(message_id))
                    continue
                raw = fields.get(FIELD.encode(), fields.get(FIELD))
                deliveries.append(Delivery(origin, _text(message_id), ChangeEvent.from_json(raw)))
        return deliveries

    def ack(self, target: str, origin: str, *message_ids: str) -> None:
        if message_ids:
            self._call("xack", self.stream(origin), target, *message_ids)

    def backlog(self, origin: str, target: str) -> tuple[int, int | None]:
        """How many of ``origin``'s entries ``target`` has not acknowledged, and the commit
        time (ms) of the oldest of them (``None`` when there are none)."""
        stream = self.stream(origin)
        group = self._group(origin, target)
        if group is None:
            return 0, None
        pending = int(group["pending"])
        last = _text(group["last-delivered-id"])
        after_last = f"({last}" if last != "0-0" else "-"
        # Redis >= 7 counts undelivered entries itself ("lag"); it says None when it cannot
        # (after deletions), and then they are counted here.
        undelivered = group.get("lag")
        if undelivered is None:
            undelivered = len(self._call("xrange", stream, min=after_last, max="+"))
        oldest_id = None
        if pending:
            oldest_id = _text(self._call("xpending", stream, target)["min"])
        elif undelivered:
            first = self._call("xrange", stream, min=after_last, max="+", count=1)
            oldest_id = _text(first[0][0]) if first else None
        oldest_ms = None
        if oldest_id is not None:
            entry = self._call("xrange", stream, min=oldest_id, max=oldest_id)
            if entry and entry[0][1]:
                fields = entry[0][1]
                oldest_ms = ChangeEvent.from_json(
                    fields.get(FIELD.encode(), fields.get(FIELD))).committed_at_ms
        return pending + int(undelivered), oldest_ms

    def trim(self, origin: str) -> int:
        """Drop ``origin``'s entries that every group has acknowledged; returns how many."""
        stream = self.stream(origin)
        keep_from: list[str] = []
        for target in self.peers(origin):
            group = self._group(origin, target)
            if group is None:
                return 0
            if int(group["pending"]):
                keep_from.append(_text(self._call("xpending", stream, target)["min"]))
            else:
                keep_from.append(_next_id(_text(group["last-delivered-id"])))
        if not keep_from:
            return 0
        oldest = min(keep_from, key=lambda mid: tuple(int(p) for p in mid.split("-")))
        return int(self._call("xtrim", stream, minid=oldest, approximate=False))

    def stream_lengths(self) -> dict[str, int]:
        return {origin: int(self._call("xlen", self.stream(origin))) for origin in self.regions}

    def delete_streams(self, origins: Iterable[str] | None = None) -> None:
        """Remove the streams (and so their groups): for tests and resets only."""
        names = [self.stream(o) for o in (self.regions if origins is None else origins)]
        self._call("delete", *names)

    def _group(self, origin: str, target: str) -> dict[str, Any] | None:
        for group in self._call("xinfo_groups", self.stream(origin)):
            if _text(group["name"]) == target:
                return group
        return None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except redis.ResponseError:
            raise
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailableError(
                f"Redis is unreachable for replication ({type(exc).__name__}: {exc}); "
                "committed changes wait in each region's outbox and are sent when it is back"
            ) from exc
