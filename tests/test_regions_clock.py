"""Hybrid logical clock: monotonic whatever the physical clocks do, and causal across nodes."""

from __future__ import annotations

import pytest

from m11_tenant.errors import ConfigValidationError
from m11_tenant.regions.clock import HybridLogicalClock, ManualClock, Stamp


def test_follows_the_physical_clock_when_it_moves_forward():
    clock = HybridLogicalClock("us")
    assert clock.now(1000) == Stamp(1000, 0, "us")
    assert clock.now(1005) == Stamp(1005, 0, "us")


def test_never_goes_back_when_the_physical_clock_does():
    clock = HybridLogicalClock("us")
    first = clock.now(1000)
    second = clock.now(990)  # NTP stepped the clock back
    third = clock.now(1000)
    assert first < second < third
    assert second == Stamp(1000, 1, "us") and third == Stamp(1000, 2, "us")


def test_observing_a_stamp_from_the_future_orders_later_events_after_it():
    us, eu = HybridLogicalClock("us"), HybridLogicalClock("eu")
    remote = eu.now(5000)  # eu's clock runs 4 s ahead
    merged = us.observe(remote, 1000)
    assert merged == Stamp(5000, 1, "us") and merged > remote
    assert us.now(1001) == Stamp(5000, 2, "us")  # a write after receiving stays after it


@pytest.mark.parametrize(("local", "remote", "physical", "expected"), [
    pytest.param((100, 3), (100, 7), 50, (100, 8), id="same-wall-takes-max-logical"),
    pytest.param((200, 3), (100, 7), 50, (200, 4), id="local-ahead"),
    pytest.param((100, 3), (200, 7), 50, (200, 8), id="remote-ahead"),
    pytest.param((100, 3), (200, 7), 300, (300, 0), id="physical-ahead"),
])
def test_observe_cases(local, remote, physical, expected):
    clock = HybridLogicalClock("us", *local)
    result = clock.observe(Stamp(*remote, "eu"), physical)
    assert (result.wall_ms, result.logical) == expected
    assert result > Stamp(*local, "us") and (result.wall_ms, result.logical) > remote


def test_restore_resumes_after_the_greatest_stored_stamp():
    clock = HybridLogicalClock("us")
    clock.restore(Stamp(9000, 4, "us"))
    assert clock.now(100) == Stamp(9000, 5, "us")
    clock.restore(Stamp(10, 0, "us"))  # an older stamp never moves it back
    assert clock.now(100) == Stamp(9000, 6, "us")


def test_the_node_breaks_ties_so_two_regions_never_draw():
    assert Stamp(100, 0, "eu") < Stamp(100, 0, "us")
    assert Stamp(100, 0, "us") != Stamp(100, 0, "eu")


@pytest.mark.parametrize("stamp", [Stamp(0, 0, "us"), Stamp(1767225600000, 12, "eu-west"),
                                   Stamp(5, 99999, "ap")])
def test_text_form_round_trips_and_sorts_like_the_tuple(stamp):
    assert Stamp.parse(str(stamp)) == stamp
    other = Stamp(stamp.wall_ms + 1, 0, "aa")
    assert (str(stamp) < str(other)) == (stamp < other)


@pytest.mark.parametrize("text", ["", "12", "a.b.c", "1.x.us"])
def test_parse_refuses_what_is_not_a_stamp(text):
    with pytest.raises(ValueError, match="not a clock stamp") as refused:
        Stamp.parse(text)
    assert not isinstance(refused.value, ConfigValidationError)  # a bug, not user input


def test_manual_clock_moves_only_forward():
    clock = ManualClock(start_ms=1000)
    assert clock() == 1000 and clock.advance(250) == 1250 and clock() == 1250
    with pytest.raises(ValueError, match="only moves forward") as refused:
        clock.advance(-1)
    assert not isinstance(refused.value, ConfigValidationError)
