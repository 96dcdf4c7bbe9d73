"""Hybrid logical clocks: timestamps that order changes across regions without a global clock.

A stamp is ``(wall_ms, logical, node)``. ``wall_ms`` follows the physical clock, so stamps
read like times and last-write-wins matches what people expect; ``logical`` breaks ties
and keeps the order causal when a clock lags behind a message it has already received
(Kulkarni et al., "Logical Physical Clocks", 2014); ``node`` (the region) makes two stamps
from different regions never equal, so every comparison has one winner.

Everything here is pure: the physical time is an argument, never read from the system.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import NamedTuple


class Stamp(NamedTuple):
    """One hybrid-logical-clock timestamp; tuples compare field by field, so ``<`` just works."""

    wall_ms: int
    logical: int
    node: str

    def __str__(self) -> str:
        # Zero-padded so that the text form sorts like the tuple (handy in SQL and logs).
        return f"{self.wall_ms:015d}.{self.logical:05d}.{self.node}"

    @classmethod
    def parse(cls, text: str) -> Stamp:
        """Read the form ``str()`` writes.

        Raises:
            ValueError: on anything else (stamps come from the package's own tables and
                streams, never from a user: a bad one is a bug, not input to report).
        """
        try:
            wall, logical, node = text.split(".", 2)
            return cls(int(wall), int(logical), node)
        except (ValueError, AttributeError):
            raise ValueError(f"not a clock stamp: {text!r} (expected wall_ms.logical.node)"
                             ) from None


@dataclass
class HybridLogicalClock:
    """The clock of one node. ``now`` stamps a local event, ``observe`` merges a remote stamp.

    Guarantees, whatever the physical clocks do: every stamp this clock issues is greater
    than every stamp it issued or observed before, and ``wall_ms`` never runs behind the
    physical time it was given.
    """

    node: str
    wall_ms: int = 0
    logical: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def now(self, physical_ms: int) -> Stamp:
        """A stamp for a local event (a committed write) at physical time ``physical_ms``."""
        with self._lock:
            if physical_ms > self.wall_ms:
                self.wall_ms, self.logical = physical_ms, 0
            else:
                self.logical += 1
            return Stamp(self.wall_ms, self.logical, self.node)

    def observe(self, remote: Stamp, physical_ms: int) -> Stamp:
        """Merge a stamp received from another node; the result is greater than both."""
        with self._lock:
            wall = max(self.wall_ms, remote.wall_ms, physical_ms)
            if wall == self.wall_ms == remote.wall_ms:
                logical = max(self.logical, remote.logical) + 1
            elif wall == self.wall_ms:
                logical = self.logical + 1
            elif wall == remote.wall_ms:
                logical = remote.logical + 1
            else:
                logical = 0
            self.wall_ms, self.logical = wall, logical
            return Stamp(wall, logical, self.node)

    def restore(self, last: Stamp | None) -> None:
        """Resume after a restart from the greatest stamp stored, so stamps never go back."""
        if last is not None:
            with self._lock:
                if (last.wall_ms, last.logical) > (self.wall_ms, self.logical):
                    self.wall_ms, self.logical = last.wall_ms, last.logical


class ManualClock:
    """Milliseconds that move only when told: inject it where output must not depend on time."""

    def __init__(self, start_ms: int = 1_767_225_600_000):  # 2026-01-01T00:00:00Z
        self.ms = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` and return the new reading.

        Raises:
            ValueError: ``ms`` is negative (a clock only moves forward).
        """
        if ms < 0:
            raise ValueError(f"a clock only moves forward; got ms={ms}")
        with self._lock:
            self.ms += ms
            return self.ms
