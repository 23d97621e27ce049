"""The throttles' bucket: what a client over its rate is refused, when it may come back, what it
may send in any one period, and what the count costs whatever the rate. (Through the API:
test_bookings.py and test_hardening.py.)"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from rest_framework.throttling import UserRateThrottle

from bookings.api.throttling import BucketThrottle, ClientRateThrottle

CLIENT = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=7))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(1_800_000_000.0)
    monkeypatch.setattr(BucketThrottle, "timer", staticmethod(lambda: clock.now))
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


def test_a_client_may_send_its_rate_at_once_then_one_each_period_over_the_rate(clock, rate):
    rate("10/minute")
    start = clock.now
    assert all(allowed(clock, start + i * 0.1)[0] for i in range(10))
    passed, wait = allowed(clock, start + 1)
    assert not passed
    assert wait is not None and round(wait, 3) == 5  # the first of the ten is 6 s old then
    assert not allowed(clock, start + 1 + wait - 0.5)[0]
    assert allowed(clock, start + 1 + wait + 0.001)[0]
    assert not allowed(clock, start + 6.5)[0]  # and the next one 6 s later
    assert allowed(clock, start + 12.001)[0]


def test_a_client_at_its_rate_is_never_refused_whatever_the_clock(clock, rate):
    """No window boundaries: a client keeping to its rate passes every time, small rates too."""
    rate("1/second")
    start = clock.now + 0.37
    assert all(allowed(clock, start + i)[0] for i in range(300))
    rate("300/minute")
    start = clock.now + 1
    assert all(allowed(clock, start + i * 0.2)[0] for i in range(1500))


def test_retry_after_is_when_the_next_request_passes_and_no_period_holds_2n(clock, rate):
    """Whatever came before, a refused client that comes back after Retry-After passes; and a
    client sending as fast as it is let through gets at most 2N - 1 within any one period."""
    rate("20/minute")
    draw = random.Random(20261207)
    for _ in range(100):
        cache.clear()
        t = clock.now = clock.now + 3600
        end = t + 300
        passed_at = []
        while t < end:
            t += draw.expovariate(2.0)
            passed, wait = allowed(clock, t)
            if passed:
                passed_at.append(t)
                continue
            assert wait is not None and 0 < wait <= 60
            if draw.random() < 0.5:  # comes back as told
                t += wait + 0.001
                assert allowed(clock, t)[0], t
                passed_at.append(t)
        assert max(sum(1 for u in passed_at if s <= u < s + 60) for s in passed_at) <= 39


def test_a_client_with_a_large_rate_costs_one_number_in_the_cache(clock, rate):
    rate("1000000/minute")
    for _ in range(5000):
        assert allowed(clock, clock.now + 0.001)[0]
    saved = cache.get(ClientRateThrottle().get_cache_key(CLIENT, None))
    assert isinstance(saved, float)


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
    assert len(cache.get(DrfClientThrottle().get_cache_key(CLIENT, None))) == 3
    for other in ([clock.now - 5, clock.now - 6], "x", True):  # not ours: a full bucket
        cache.set(ours, other)
        assert allowed(clock)[0] and cache.get(ours) == clock.now + 6
