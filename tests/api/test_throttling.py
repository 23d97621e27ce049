"""The throttles' sliding window: what a client over its rate is refused, when it may come back,
and what the count costs whatever the rate. (Through the API: test_bookings.py and
test_hardening.py.)"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from rest_framework.throttling import UserRateThrottle

from bookings.api.throttling import ClientRateThrottle, SlidingWindowThrottle

CLIENT = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=7))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(60.0 * 1_000_000)  # the start of a minute
    monkeypatch.setattr(SlidingWindowThrottle, "timer", staticmethod(lambda: clock.now))
    return clock


@pytest.fixture
def rate(settings):
    def set_rate(value: str) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"client": value},
        }

    cache.clear()
    yield set_rate
    cache.clear()


def allowed(clock: Clock, at: float | None = None) -> tuple[bool, float | None]:
    if at is not None:
        clock.now = at
    throttle = ClientRateThrottle()
    passed = throttle.allow_request(CLIENT, None)
    return passed, None if passed else throttle.wait()


def test_the_rate_passes_within_a_window_and_the_next_request_waits_for_the_window(clock, rate):
    rate("10/minute")
    start = clock.now
    assert all(allowed(clock, start + i)[0] for i in range(10))
    passed, wait = allowed(clock, start + 10)
    assert not passed
    # All ten fell in this window: they count in full until it ends, then fade out over the next.
    assert wait is not None and round(wait, 3) == 56  # 50 s to the next window, 6 s into it
    assert not allowed(clock, start + 10 + wait - 1)[0]
    assert allowed(clock, start + 10 + wait + 0.001)[0]


def test_the_last_windows_requests_count_for_the_share_still_within_the_period(clock, rate):
    rate("10/minute")
    start = clock.now
    for i in range(10):
        assert allowed(clock, start + 50 + i * 0.5)[0]  # late in the first minute
    # 5 s into the next minute nearly all of them are less than a minute old: refused.
    passed, wait = allowed(clock, start + 65)
    assert not passed and wait is not None and wait >= 1
    # Halfway through it, half of them count: five more pass, the sixth does not.
    assert [allowed(clock, start + 90 + i * 0.1)[0] for i in range(6)] == [True] * 5 + [False]


def test_retry_after_is_when_the_next_request_passes(clock, rate):
    """Whatever came before, a refused client that comes back after Retry-After passes."""
    rate("20/minute")
    draw = random.Random(20261207)
    for _ in range(200):
        cache.clear()
        start = clock.now = 60.0 * draw.randrange(10**6)
        t = start
        while True:
            t += draw.expovariate(1.0)
            passed, wait = allowed(clock, t)
            if not passed:
                break
        assert wait is not None and wait >= 1
        assert allowed(clock, t + wait + 0.001)[0], (start, t, wait)


def test_a_client_with_a_large_rate_costs_three_numbers_in_the_cache(clock, rate):
    rate("1000000/minute")
    for i in range(5000):
        assert allowed(clock, clock.now + 0.01)[0]
    saved = cache.get(ClientRateThrottle().get_cache_key(CLIENT, None))
    assert len(saved) == 3 and saved[1] + saved[2] == 5000


def test_a_rate_of_zero_refuses_everything_for_a_period(clock, rate):
    rate("0/minute")
    assert allowed(clock) == (False, 60.0)


def test_during_a_deploy_drfs_throttle_and_this_one_do_not_read_each_others_counts(clock, rate):
    """Old web processes (DRF's list of times) and new ones share the cache for a while: neither
    may fail on what the other wrote (a 500 for the client), they count apart meanwhile."""
    rate("10/minute")

    class DrfClientThrottle(UserRateThrottle):  # what the web processes ran before
        scope = "client"
        rate = "10/minute"

    for _ in range(3):
        assert allowed(clock, clock.now + 1)[0]
        assert DrfClientThrottle().allow_request(CLIENT, None)
    ours = ClientRateThrottle().get_cache_key(CLIENT, None)
    assert cache.get(ours)[1] == 3
    assert len(cache.get(DrfClientThrottle().get_cache_key(CLIENT, None))) == 3
    cache.set(ours, [clock.now - 5, clock.now - 6])  # anything else under our key: counted anew
    assert allowed(clock)[0] and cache.get(ours)[1] == 1
