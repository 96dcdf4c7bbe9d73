"""The counters under the rate limits and the failed-authentication throttle."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from m11_tenant.settings import Rate
from m11_tenant.web.errors import HttpError
from m11_tenant.web.ratelimit import CLEAR_SECONDS, AuthThrottle, Counters, LocalCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_counters_count_per_window_and_stay_bounded():
    clock = Clock()
    counters = LocalCounters(clock=clock, max_keys=3)
    assert [counters.hit("a", 10)[0] for _ in range(3)] == [1, 2, 3]
    assert counters.peek("a") == (3, 10.0)
    clock.now += 10
    assert counters.peek("a") == (0, 0.0) and counters.hit("a", 10) == (1, 10.0)
    for name in "bcde":
        counters.hit(name, 10)
    assert len(counters._counts) <= 3


def test_counters_fall_back_to_the_process_when_redis_fails():
    dead = redis.Redis(port=1, socket_connect_timeout=0.1, socket_timeout=0.1)
    counters = Counters(dead)
    assert [counters.hit("k", 60)[0] for _ in range(3)] == [1, 2, 3]
    assert counters.errors == 1  # asked once, then left alone for the pause


def test_a_cool_down_started_on_another_server_is_seen_within_a_second():
    server = fakeredis.FakeServer()
    clock = Clock()
    here = AuthThrottle(Counters(fakeredis.FakeRedis(server=server)), Rate(2, 3600),
                        clock=clock)
    there = AuthThrottle(Counters(fakeredis.FakeRedis(server=server)), Rate(2, 3600),
                         clock=clock)
    here.check("198.51.100.9")  # clean, and remembered as clean for a second
    there.failed("198.51.100.9")
    there.failed("198.51.100.9")
    with pytest.raises(HttpError) as refused:
        there.check("198.51.100.9")
    assert refused.value.status == 429
    here.check("198.51.100.9")  # still within the second it trusts
    clock.now += CLEAR_SECONDS
    with pytest.raises(HttpError):
        here.check("198.51.100.9")
    here.check("198.51.100.10")  # another address is not affected
